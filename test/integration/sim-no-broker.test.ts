/**
 * device-sim against a broker that is not there reported a run with
 * "connects 0" and exit 0. It must fail with a clear error and a non-zero exit.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { runCli } from '../helpers/cli.ts'

test('device-sim exits non-zero with a clear error when no broker listens', async (t) => {
  // a port that was free a moment ago: nothing listens there
  const s = createServer()
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise<void>((resolve) => s.close(() => resolve()))
  const r = await runCli(t, 'device-sim/main.ts', ['--broker', `mqtt://127.0.0.1:${port}`, '--devices', '2', '--count', '3', '--progress', 'off'], 90_000, { env: { SIM_CONNECT_TIMEOUT_S: '2' } })
  assert.notEqual(r.code, null, 'device-sim still running')
  assert.equal(r.code, 2, r.stderr)
  assert.match(r.stderr, new RegExp(`cannot connect to mqtt://127\\.0\\.0\\.1:${port} within 2 s \\(connect ECONNREFUSED 127\\.0\\.0\\.1:${port}\\)`))
})
