/**
 * The admin page's files (index.html, app.js, style.css here; chart.js and base.css from
 * the repository's web/ folder, shared with the ingest page), read once at startup and
 * served from memory with an ETag. No CDN, no build step: plain browser JavaScript, and
 * `npm run build` copies these files next to the compiled code (scripts/copy-assets.mjs).
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'

type Asset = { body: Buffer, type: string, etag: string }

const here = (f: string): URL => new URL(f, import.meta.url)

function load (url: URL, type: string): Asset {
  const body = readFileSync(url)
  return { body, type, etag: '"' + createHash('sha1').update(body).digest('base64url').slice(0, 16) + '"' }
}

/** URL path -> [file, content type]; only these paths touch the files. */
const FILES = new Map<string, [string, string]>([
  ['/', ['./index.html', 'text/html; charset=utf-8']],
  ['/assets/app.js', ['./app.js', 'text/javascript; charset=utf-8']],
  ['/assets/style.css', ['./style.css', 'text/css; charset=utf-8']],
  ['/assets/chart.js', ['../../../web/chart.js', 'text/javascript; charset=utf-8']],
  ['/assets/base.css', ['../../../web/base.css', 'text/css; charset=utf-8']]
])

let assets: Map<string, Asset> | null = null

function all (): Map<string, Asset> {
  assets ??= new Map([...FILES].map(([path, [file, type]]) => [path, load(here(file), type)]))
  return assets
}

/**
 * Serves a page file; false when `path` is not one. Any other route (the probes, /metrics)
 * never reads the files, so a build without them (a `tsc` run without `npm run build`'s
 * copy step) still answers /readyz; the page itself then fails with the missing file's name.
 */
export function servePage (req: IncomingMessage, res: ServerResponse, path: string): boolean {
  if (!FILES.has(path)) return false
  const a = all().get(path)!
  const headers = {
    'content-type': a.type,
    etag: a.etag,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    ...(path === '/' ? { 'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'", 'x-frame-options': 'DENY' } : {})
  }
  if (req.headers['if-none-match'] === a.etag) { res.writeHead(304, headers); res.end(); return true }
  res.writeHead(200, { ...headers, 'content-length': a.body.length })
  res.end(req.method === 'HEAD' ? undefined : a.body)
  return true
}

/** Total bytes of the page and its assets (docs and the size test). */
export function pageBytes (): number {
  let n = 0
  for (const a of all().values()) n += a.body.length
  return n
}
