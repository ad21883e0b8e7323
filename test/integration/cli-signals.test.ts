/**
 * One Ctrl-C on `npm run gateway` (or `npm run ingest`) reaches node twice within a few
 * milliseconds: the terminal signals the process group and npm forwards its own copy. The
 * CLIs took the copy for a second Ctrl-C and exited 130 at once, skipping the graceful
 * drain. Here two SIGINTs 5 ms apart must still drain and exit 0. A real second signal, past
 * the 0.5 s window, still quits at once: test/unit/common-signals.test.ts for the rule and
 * ingest-http.test.ts for a CLI.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { spawnCli, tempDir } from '../helpers/index.ts'
import { connectDevice, publish, reading } from '../helpers/gateway.ts'

const twoSigints = async (pid: number, gapMs: number): Promise<void> => {
  process.kill(pid, 'SIGINT')
  await new Promise((r) => setTimeout(r, gapMs))
  process.kill(pid, 'SIGINT')
}

async function gatewayCli (t: { after: (fn: () => unknown) => void }): Promise<Awaited<ReturnType<typeof spawnCli>>> {
  const dir = await tempDir(t)
  return await spawnCli(t, 'gateway/main.ts', ['--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--data-dir', join(dir, 'gw')], { env: { LOG_LEVEL: 'info' }, readyTimeoutMs: 60_000 })
}

test('gateway: two SIGINTs 5 ms apart (one Ctrl-C under npm) drain and exit 0', async (t) => {
  const gw = await gatewayCli(t)
  const c = await connectDevice(t, gw.ready.mqttPort as number, 'sensor-1')
  await publish(c, 'devices/sensor-1/readings', reading(1))
  await twoSigints(gw.proc.pid!, 5)
  const exit = await gw.exited
  const msgs = gw.lines.map((l) => l.msg)
  assert.deepEqual(exit, { code: 0, signal: null }, `log: ${JSON.stringify(msgs)}`)
  assert.ok(msgs.includes('shutting down'), 'the graceful stop ran')
  assert.ok(!msgs.includes('second signal: exiting now'), 'the copy was not taken for a second Ctrl-C')
})
