/**
 * A wrong-password storm must not starve the store, and refusal timing must not
 * tell which user names exist. The gateway is the real CLI (its own event loop and libuv
 * pool), hashes have the production cost (scrypt N=16384). On the code before the scrypt
 * gate, 60 concurrent bad CONNECTs held a good device's PUBACK for seconds (bench
 * login-storm: `storm-unbounded`), and an unknown user name was refused ~10x faster than
 * a known one with a wrong password.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { hashPassword } from '../../gateway/broker/auth.ts'
import { timedConnect } from '../../bench/lib/mqtt-timing.ts'
import { spawnCli, tempDir } from '../helpers/index.ts'
import { reading } from '../helpers/gateway.ts'

async function gateway (t: Parameters<typeof tempDir>[0], extra: string[]): Promise<number> {
  const dir = await tempDir(t)
  const authFile = join(dir, 'auth.json')
  await writeFile(authFile, JSON.stringify({ devices: { good: await hashPassword('good-pass'), 'sensor-1': await hashPassword('s1-pass') }, apps: {} }), { mode: 0o600 })
  const gw = await spawnCli(t, 'gateway/main.ts', ['--data-dir', join(dir, 'data'), '--auth', 'file', '--auth-file', authFile, '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--durability', 'power', ...extra], { env: { LOG_LEVEL: 'error' }, readyTimeoutMs: 60_000 })
  return gw.ready.mqttPort as number
}

/** Time from connect to the CONNACK refusal (or close). */
const refusal = timedConnect

test('60 concurrent wrong-password CONNECTs: a good device keeps its PUBACK p99 under 1 s', { timeout: 120_000 }, async (t) => {
  // back-off off: this measures the scrypt gate alone (from one address the back-off would also stop the storm)
  const port = await gateway(t, ['--login-backoff-base-ms', '0'])
  const dev = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'good', username: 'good', password: 'good-pass', reconnectPeriod: 0 })
  t.after(() => dev.endAsync(true))
  let stop = false
  let refused = 0
  const storm = Array.from({ length: 60 }, async (_, i) => {
    while (!stop) { await refusal(port, { clientId: `storm-${i}`, username: 'sensor-1', password: 'wrong' }); refused++ }
  })
  const lat: number[] = []
  const end = Date.now() + 6000
  for (let seq = 1; Date.now() < end; seq++) {
    const t0 = performance.now()
    await dev.publishAsync('devices/good/readings', reading(seq), { qos: 1 })
    lat.push(performance.now() - t0)
    await new Promise((r) => setTimeout(r, 20))
  }
  stop = true // the storm's last CONNECTs end when the gateway is killed after the test
  void Promise.all(storm)
  lat.sort((a, b) => a - b)
  const p99 = lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))]!
  assert.ok(refused >= 6, `the storm really ran: ${refused} refusals`)
  assert.ok(p99 < 1000, `PUBACK p99 ${p99.toFixed(0)} ms during the storm (${lat.length} publishes, ${refused} refusals)`)
  assert.ok(lat.length >= 20, `the device kept publishing: ${lat.length} PUBACKs in 6 s`)
})

test('refusal timing: an unknown user name takes as long as a known one with a wrong password', { timeout: 120_000 }, async (t) => {
  const port = await gateway(t, ['--login-free-failures', '1000'])
  const unknown: number[] = []
  const known: number[] = []
  for (let i = 0; i < 9; i++) {
    unknown.push(await refusal(port, { clientId: `u${i}`, username: `nobody-${i}`, password: 'wrong' }))
    known.push(await refusal(port, { clientId: 'sensor-1', username: 'sensor-1', password: 'wrong' }))
  }
  const med = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
  const ratio = med(known) / med(unknown)
  assert.ok(ratio > 1 / 3 && ratio < 3, `median refusal: known ${med(known).toFixed(1)} ms, unknown ${med(unknown).toFixed(1)} ms (ratio ${ratio.toFixed(2)})`)
})
