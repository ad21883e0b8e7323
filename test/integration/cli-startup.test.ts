/**
 * A gateway that cannot bind its MQTT or admin port exits non-zero
 * within seconds with one line naming the port, instead of logging EADDRINUSE and then
 * listening on nothing forever (Aedes' heartbeat timers kept the event loop alive).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:net'
import { runCli } from '../helpers/cli.ts'
import { tempDir } from '../helpers/index.ts'

async function holdPort (t: { after: (fn: () => unknown) => void }): Promise<number> {
  const s: Server = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => s.close(() => resolve())))
  return (s.address() as { port: number }).port
}

test('gateway exits non-zero promptly when the MQTT port is taken', async (t) => {
  const port = await holdPort(t)
  const dir = await tempDir(t)
  const r = await runCli(t, 'gateway/main.ts', ['--host', '127.0.0.1', '--mqtt-port', String(port), '--admin-port', '0', '--data-dir', dir], 90_000, { mark: /gateway failed to start/ })
  assert.notEqual(r.markMs, null, `no failure logged: ${r.stdout}`)
  assert.notEqual(r.code, null, `gateway still running ${r.ms - r.markMs!} ms after it logged its failure with its MQTT port taken (it must exit)`)
  assert.ok(r.ms - r.markMs! < 5000, `exited ${r.ms - r.markMs!} ms after the failure`)
  assert.notEqual(r.code, 0)
  const lines = r.stderr.trim().split('\n')
  assert.equal(lines.length, 1, `one line on stderr, got: ${r.stderr}`)
  assert.match(lines[0]!, new RegExp(`--mqtt-port ${port}: 127\\.0\\.0\\.1:${port} is already in use`))
})

test('gateway exits non-zero promptly when the admin port is taken', async (t) => {
  const port = await holdPort(t)
  const dir = await tempDir(t)
  const r = await runCli(t, 'gateway/main.ts', ['--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', String(port), '--data-dir', dir], 90_000, { mark: /gateway failed to start/ })
  assert.notEqual(r.markMs, null, `no failure logged: ${r.stdout}`)
  assert.notEqual(r.code, null, `gateway still running ${r.ms - r.markMs!} ms after it logged its failure with its admin port taken (it must exit)`)
  assert.ok(r.ms - r.markMs! < 5000, `exited ${r.ms - r.markMs!} ms after the failure`)
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, new RegExp(`--admin-port ${port}: 127\\.0\\.0\\.1:${port} is already in use`))
})
