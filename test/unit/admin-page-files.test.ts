/**
 * The admin page's files are read only for the page's own paths: a build without them
 * (tsc alone, without `npm run build`'s copy step) still answers the probes. This failed
 * when any admin request loaded every page file first: /readyz answered 503 "ENOENT ...
 * index.html" on such a build, which bench/fuzz.ts counted as "not ready" for a whole run.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { test } from 'node:test'
import { staticPage } from '../../common/page.ts'

test('a page module without its files leaves other paths alone and names the missing file for its own', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'page-files-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  // the admin page's file list over an empty folder: no index.html, app.js, ...
  const page = staticPage(pathToFileURL(join(dir, '/')), ['app.js', 'style.css'])
  const req = { method: 'GET', headers: {} } as unknown as IncomingMessage
  const res = { writeHead: () => assert.fail('nothing written for a path that is not the page'), end: () => {} } as unknown as ServerResponse
  for (const path of ['/readyz', '/healthz', '/metrics', '/status']) assert.equal(page.serve(req, res, path), false, path)
  assert.throws(() => page.serve(req, res, '/'), /index\.html/)
})
