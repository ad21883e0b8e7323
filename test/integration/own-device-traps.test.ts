/**
 * Issue 15, item 5: traps for people bringing their own devices. A wrong client id is
 * refused with the expected topic in the log; publishes on topics that are not stored are
 * logged once and counted; a plain number payload gets an error that says so; a device
 * publishing JSON gets JSON receipts; JSON integers beyond 2^53 are refused by field name.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Gateway, parseGatewayConfig, type GatewayConfig } from '../../gateway/index.ts'
import { decodeReceipt } from '../../protocol/index.ts'
import { hashPassword } from '../../gateway/broker/auth.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { connectDevice, publish, reading } from '../helpers/gateway.ts'
import { startFakeUpstream } from '../helpers/fake-upstream.ts'

type T = { after: (fn: () => unknown) => void }

async function start (t: T, overrides: Partial<GatewayConfig> = {}): Promise<{ gw: Gateway, logs: Array<Record<string, unknown>> }> {
  const logs: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk: Buffer, _enc, cb) { for (const l of chunk.toString().split('\n')) if (l) logs.push(JSON.parse(l) as Record<string, unknown>); cb() } })
  const base = parseGatewayConfig({ argv: [], env: {} })
  const gw = await Gateway.create({ ...base, host: '127.0.0.1', mqttPort: 0, adminPort: 0, dataDir: await tempDir(t), ...overrides }, pino({ level: 'info' }, stream))
  t.after(() => gw.close())
  return { gw, logs }
}

test('a publisher with the wrong client id is told which topic it may use', async (t) => {
  const { gw, logs } = await start(t)
  const c = await connectDevice(t, gw.mqttPort, 'kitchen-sensor')
  await assert.rejects(publish(c, 'devices/kitchen/readings', reading(1)))
  const line = await waitFor(() => logs.find((l) => l.topic === 'devices/kitchen/readings'))
  assert.equal(line.expected, 'devices/kitchen-sensor/readings')
  assert.match(String(line.msg), /client id must equal the device id/)
})

test('publishes on topics that are not stored are warned about once per client and topic, and counted', async (t) => {
  const { gw, logs } = await start(t)
  const c = await connectDevice(t, gw.mqttPort, 'tasmota-1')
  for (let i = 0; i < 3; i++) await publish(c, 'home/kitchen/temperature', '21.5')
  await publish(c, 'home/kitchen/humidity', '40')
  const lines = logs.filter((l) => String(l.msg).includes('stores nothing'))
  assert.deepEqual(lines.map((l) => l.topic), ['home/kitchen/temperature', 'home/kitchen/humidity'])
  // a warning, not info: a wrong topic looked exactly like a stored reading to the publisher
  assert.deepEqual(lines.map((l) => l.level), [40, 40])
  assert.equal(gw.store.items, 0)
  assert.match(await gw.metrics.registry.getSingleMetricAsString('gateway_unstored_publishes_total'), /gateway_unstored_publishes_total\{outcome="routed"\} 4/)
})

test('a reading on a wrong topic is counted per topic on /status, and /status says what happened to it', async (t) => {
  const { gw } = await start(t)
  const c = await connectDevice(t, gw.mqttPort, 'sensor-1')
  // the singular topic and another prefix: both acknowledged, nothing stored
  await publish(c, 'devices/sensor-1/reading', reading(1))
  await publish(c, 'devices/sensor-1/reading', reading(2))
  await publish(c, 'sensors/sensor-1/readings', reading(3))
  assert.equal(gw.store.items, 0)
  const st = await (await fetch(`http://127.0.0.1:${gw.adminPort}/status`)).json() as { unstoredPublishes: { policy: string, publishes: number, refused: number, topics: Array<{ topic: string, publishes: number, lastClientId: string }> } }
  assert.equal(st.unstoredPublishes.policy, 'accept')
  assert.equal(st.unstoredPublishes.publishes, 3)
  assert.equal(st.unstoredPublishes.refused, 0)
  assert.deepEqual(st.unstoredPublishes.topics.map((x) => [x.topic, x.publishes, x.lastClientId]), [['devices/sensor-1/reading', 2, 'sensor-1'], ['sensors/sensor-1/readings', 1, 'sensor-1']])
})

test('--unmatched-topics refuse closes a device\'s connection on a topic that stores nothing, without a PUBACK', async (t) => {
  const { gw, logs } = await start(t, { unmatchedTopics: 'refuse' })
  const c = await connectDevice(t, gw.mqttPort, 'sensor-1')
  await assert.rejects(publish(c, 'devices/sensor-1/reading', reading(1)), /connection closed before PUBACK/)
  const line = await waitFor(() => logs.find((l) => l.topic === 'devices/sensor-1/reading'))
  assert.equal(line.expected, 'devices/sensor-1/readings')
  assert.match(String(line.msg), /refused, closing the connection/)
  assert.match(await gw.metrics.registry.getSingleMetricAsString('gateway_unstored_publishes_total'), /gateway_unstored_publishes_total\{outcome="refused"\} 1/)
  // the readings topic still works on a new connection
  const d = await connectDevice(t, gw.mqttPort, 'sensor-1')
  await publish(d, 'devices/sensor-1/readings', reading(1))
  assert.equal(gw.store.items, 1)
  assert.equal(gw.broker.unstored().refused, 1)
})

test('--unmatched-topics refuse leaves an app\'s own topics routed', async (t) => {
  const dir = await tempDir(t)
  const authFile = join(dir, 'auth.json')
  await writeFile(authFile, JSON.stringify({ devices: { 'sensor-1': await hashPassword('s1-pass-0123456789', 1024) }, apps: { dashboard: await hashPassword('dash-pass-0123456789', 1024) } }))
  const { gw } = await start(t, { unmatchedTopics: 'refuse', auth: 'file', authFile })
  const app = await connectDevice(t, gw.mqttPort, 'dashboard-1', { username: 'dashboard', password: 'dash-pass-0123456789' })
  await publish(app, 'dashboard/commands/light', 'on')
  await publish(app, 'dashboard/commands/light', 'off')
  assert.deepEqual([gw.broker.unstored().publishes, gw.broker.unstored().refused], [2, 0])
  assert.equal(app.connected, true)
})

test('a plain number payload and a JSON integer beyond 2^53 are dead-lettered with clear reasons', async (t) => {
  const { gw } = await start(t)
  const c = await connectDevice(t, gw.mqttPort, 'dev-a')
  await publish(c, 'devices/dev-a/readings', '21.5')
  await publish(c, 'devices/dev-a/readings', '{"seq":1,"values":{"counter":9007199254740993}}')
  const dl = await gw.store.deadLetters()
  assert.equal(dl.length, 2)
  assert.match(dl[0]!.reason, /payload is a plain number \("21\.5"\), not a reading: a reading is a JSON object/)
  assert.doesNotMatch(dl[0]!.reason, /CBOR (decode|item)|map\/object/)
  assert.match(dl[1]!.reason, /^values\.counter: integer beyond 2\^53 - 1 cannot be kept exact/)
})

test('a device that publishes JSON gets JSON receipts; a CBOR device gets CBOR', async (t) => {
  const up = await startFakeUpstream(t)
  const { gw } = await start(t, { upstream: [up.url], token: 'secret-pad-01234', lingerMs: 0 })
  const got = new Map<string, Buffer>()
  for (const id of ['js-1', 'cb-1']) {
    const c = await connectDevice(t, gw.mqttPort, id)
    await c.subscribeAsync(`devices/${id}/receipts`, { qos: 1 })
    c.on('message', (_topic, payload) => { got.set(id, payload) })
    await publish(c, `devices/${id}/readings`, id === 'js-1' ? JSON.stringify({ seq: 1, boot: 7, values: { t: 1 } }) : reading(1, { boot: 7 }))
  }
  await waitFor(() => got.size === 2, { what: 'both receipts' })
  assert.deepEqual(JSON.parse(got.get('js-1')!.toString()), { boot: 7, upTo: 1, rejected: [] })
  assert.deepEqual(decodeReceipt(got.get('cb-1')!), { boot: 7, upTo: 1, rejected: [] })
})
