/**
 * Errors that name their input. Before: `gateway dlq list --admin URL` on a dead port
 * printed `fetch failed` (no URL, no ECONNREFUSED); `--config deploy/gateway.json` on a box
 * without its devices file printed a bare ENOENT and exited 1 where every other config
 * error names the flag and exits 2; `gateway dlq --help` answered `unknown command
 * "--help"`; an unknown config key listed about 100 keys on one line and suggested none.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { runCli, runDlq } from '../helpers/cli.ts'
import { tempDir } from '../helpers/index.ts'

/** A loopback port nothing listens on (bound, then closed). */
async function deadPort (): Promise<number> {
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  return port
}

test('gateway dlq --admin on a dead port names the URL and ECONNREFUSED', async (t) => {
  const url = `http://127.0.0.1:${await deadPort()}`
  const r = await runDlq(t, ['list', '--admin', url])
  assert.equal(r.code, 1)
  assert.match(r.stderr, new RegExp(`gateway dlq list: cannot reach the gateway's admin API at ${url.replace(/\./g, '\\.')}: ECONNREFUSED`))
  assert.doesNotMatch(r.stderr, /^gateway dlq list: fetch failed$/m)
})

test('gateway dlq --help prints the help and exits 0', async (t) => {
  const r = await runDlq(t, ['--help'])
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /^usage: gateway dlq <command> \[flags\]/)
  assert.doesNotMatch(r.stderr, /unknown command/)
})

test('--config whose devices file is missing names the flag, the key and the path, and exits 2', async (t) => {
  const dir = await tempDir(t)
  const missing = join(dir, 'edge-gateway', 'devices.json')
  // the example config a Pi install starts from, its paths pointed into the temp dir
  const r = await runCli(t, 'gateway/main.ts', ['--config', 'deploy/gateway.json', '--auth-file', missing, '--data-dir', join(dir, 'data'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0'], 90_000)
  assert.equal(r.code, 2, r.stderr)
  const line = r.stderr.trim().split('\n').at(-1)!
  assert.match(line, /config authFile: --auth-file /)
  assert.ok(line.includes(missing), line)
  assert.match(line, /ENOENT/)
  assert.match(line, /gateway passwd .*devices\.json add-device ID/)
})

test('an unknown config key suggests the nearest key instead of listing them all', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'gateway.json')
  await writeFile(file, JSON.stringify({ mqttProt: 1884 }))
  const r = await runCli(t, 'gateway/main.ts', ['--config', file, '--data-dir', dir], 90_000)
  assert.equal(r.code, 2)
  assert.match(r.stderr, /config mqttProt: unknown key in the config file; did you mean mqttPort\?/)
  assert.ok(r.stderr.length < 300, `one short line, got ${r.stderr.length} characters: ${r.stderr}`)
  const flag = await runCli(t, 'gateway/main.ts', ['--linger-msec', '5'], 90_000)
  assert.equal(flag.code, 2)
  assert.match(flag.stderr, /unknown flag --linger-msec; did you mean --linger-ms\?/)
})
