/**
 * Issue 15, "bring your own devices": topic mappings from the config file, one test per
 * payload shape, published by a real client (mosquitto_pub, QoS 1: it exits 0 only after
 * the PUBACK), and the example configs in docs/examples/ against their firmwares' topics.
 * Issue 19 item 5: a client produces readings of its own device id only (apps and
 * `anyDevice` mappings excepted), so the clients below use the device id as client id or
 * publish through an `anyDevice` mapping.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import mqtt from 'mqtt'
import { hashPassword } from '../../gateway/broker/auth.ts'
import { Gateway, parseGatewayConfig } from '../../gateway/index.ts'
import { compileTopic, fill } from '../../gateway/mapping/match.ts'
import { ROOT, tempDir, waitFor } from '../helpers/index.ts'
import { silentLogger } from '../helpers/gateway.ts'
import { startFakeUpstream, type FakeUpstream } from '../helpers/fake-upstream.ts'
import { needTools } from '../helpers/tools.ts'

type T = { after: (fn: () => unknown) => void }
type Item = [number, number, string, number | null, unknown, number | null, number, Record<string, unknown>]

async function start (t: T, mappings: unknown[]): Promise<{ gw: Gateway, up: FakeUpstream }> {
  const up = await startFakeUpstream(t)
  const base = parseGatewayConfig({ argv: [], env: {}, file: { mappings } })
  const gw = await Gateway.create({ ...base, host: '127.0.0.1', mqttPort: 0, adminPort: 0, dataDir: await tempDir(t), upstream: [up.url], token: 'secret-pad-01234', lingerMs: 0 }, silentLogger)
  t.after(() => gw.close())
  return { gw, up }
}

async function mosquittoPub (port: number, clientId: string, topic: string, message: string): Promise<void> {
  needTools('mosquitto_pub')
  await promisify(execFile)('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-i', clientId, '-t', topic, '-m', message], { timeout: 15_000 })
}

const items = (up: FakeUpstream): Item[] => up.batches.flatMap((b) => b.items as unknown as Item[])

test('a nested JSON object (Tasmota tele/+/SENSOR) is flattened into numeric values, rx-based', async (t) => {
  const { gw, up } = await start(t, [{ topic: 'tele/+device/SENSOR' }])
  await mosquittoPub(gw.mqttPort, 'kitchen', 'tele/kitchen/SENSOR', '{"Time":"2026-01-01T10:00:00","AM2301":{"Temperature":21.3,"Humidity":45.2},"Switch1":true,"TempUnit":"C"}')
  const [it] = await waitFor(() => items(up).length === 1 ? items(up) : null, { what: 'the mapped reading upstream' })
  assert.equal(it![2], 'kitchen')
  assert.equal(it![3], null) // no seq: identified by the gateway's receive time, at least once
  assert.deepEqual(it![7], { AM2301_Temperature: 21.3, AM2301_Humidity: 45.2, Switch1: true })
})

test('a plain number per topic (Shelly shellies/+/sensor/+) becomes one named value', async (t) => {
  const { gw, up } = await start(t, [{ topic: 'shellies/+device/sensor/+field', format: 'number', value: '{field}' }])
  await mosquittoPub(gw.mqttPort, 'shellyht-AB12', 'shellies/shellyht-AB12/sensor/temperature', '21.5')
  await mosquittoPub(gw.mqttPort, 'shellyht-AB12', 'shellies/shellyht-AB12/sensor/humidity', '48')
  await waitFor(() => items(up).length === 2, { what: 'two mapped readings' })
  assert.deepEqual(items(up).map((i) => [i[2], i[7]]), [['shellyht-AB12', { temperature: 21.5 }], ['shellyht-AB12', { humidity: 48 }]])
})

test('a mapping that names a seq field deduplicates resends; what cannot be read is dead-lettered', async (t) => {
  // a script publishing for several rooms: a bridge, so the mapping opts in with anyDevice
  const { gw, up } = await start(t, [{ topic: 'home/+room/climate', device: 'room-{room}', seq: 'n', values: { t: 'sensor.t', on: 'heater' }, anyDevice: true }])
  await mosquittoPub(gw.mqttPort, 'script-1', 'home/attic/climate', '{"n":7,"sensor":{"t":18.5},"heater":false}')
  await mosquittoPub(gw.mqttPort, 'script-1', 'home/attic/climate', '{"n":7,"sensor":{"t":18.5},"heater":false}')
  await mosquittoPub(gw.mqttPort, 'script-1', 'home/attic/climate', '{"n":8,"sensor":{"t":18.7},"heater":true}')
  await mosquittoPub(gw.mqttPort, 'script-1', 'home/attic/climate', 'hello')
  await waitFor(() => items(up).length === 2 && gw.store.items === 0, { what: 'two readings upstream' })
  assert.deepEqual(items(up).map((i) => [i[2], i[3], i[7]]), [['room-attic', 7, { t: 18.5, on: false }], ['room-attic', 8, { t: 18.7, on: true }]])
  const dl = await gw.store.deadLetters()
  assert.equal(dl.length, 1)
  assert.match(dl[0]!.reason, /payload: is neither a JSON object nor a plain number/)
  assert.match(await gw.metrics.registry.getSingleMetricAsString('gateway_intake_readings_total'), /outcome="duplicate"} 1/)
})

test('the example configs parse and map their firmwares\' default topics', async () => {
  const cases: Array<[string, string, string]> = [
    ['tasmota.json', 'tele/tasmota_1A2B3C/SENSOR', 'tasmota_1A2B3C'],
    ['tasmota.json', 'tele/tasmota_1A2B3C/STATE', 'tasmota_1A2B3C'],
    ['shelly.json', 'shellies/shellyplug-s-C45BBE/relay/0/power', 'shellyplug-s-C45BBE'],
    ['zigbee2mqtt.json', 'zigbee2mqtt/living_room_sensor', 'z2m-living_room_sensor']
  ]
  for (const [file, topic, device] of cases) {
    const c = parseGatewayConfig({ argv: [], env: {}, file: JSON.parse(await readFile(join(ROOT, 'docs', 'examples', file), 'utf8')) as Record<string, unknown> })
    const hit = c.mappings.map((m) => ({ m, named: compileTopic(m.topic)(topic) })).find((x) => x.named)
    assert.ok(hit, `${file}: no mapping for ${topic}`)
    assert.equal(fill(hit.m.device, hit.named!), device)
    // issue 19: only the coordinator's mapping speaks for other devices
    assert.equal(hit.m.anyDevice, file === 'zigbee2mqtt.json', `${file}: anyDevice`)
  }
  assert.throws(() => parseGatewayConfig({ argv: [], env: {}, file: { mappings: [{ topic: 'devices/+id/x' }] } }), /mappings\[0\]\.topic: must start with a fixed segment outside devices/)
  assert.throws(() => parseGatewayConfig({ argv: [], env: {}, file: { mappings: [{ topic: 'a/+x', device: '{y}' }] } }), /\{y\} is not a named segment/)
})

const denied = async (gw: Gateway, rule: string): Promise<number> => {
  const m = /(\d+)$/m.exec((await gw.metrics.registry.getSingleMetricAsString('gateway_mapping_denied_total')).split('\n').find((l) => l.includes(`rule="${rule}"`)) ?? '')
  return m ? Number(m[1]) : NaN
}

async function closedBy (c: mqtt.MqttClient, topic: string, message: string): Promise<void> {
  let closed = false
  c.once('close', () => { closed = true })
  c.publish(topic, message, { qos: 1 })
  // refused: the connection is closed, as for another device's readings topic
  await waitFor(() => closed, { what: `the connection closed after a publish on ${topic}` })
}

test('issue 19: --auth none, sensor-1 may not produce sensor-7\'s readings through a mapping; its own id is accepted', async (t) => {
  const { gw, up } = await start(t, [{ topic: 'shellies/+device/sensor/+field', format: 'number', value: '{field}' }])
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { clientId: 'sensor-1', reconnectPeriod: 0 })
  t.after(() => c.endAsync(true))
  await c.publishAsync('shellies/sensor-1/sensor/temp', '20.5', { qos: 1 })
  await waitFor(() => items(up).length === 1, { what: 'sensor-1\'s own reading' })
  await closedBy(c, 'shellies/sensor-7/sensor/temp', '99')
  assert.equal(await denied(gw, 'other_device'), 1)
  await waitFor(() => gw.store.items === 0, { what: 'the buffer drained' }) // nothing of sensor-7 queued
  assert.deepEqual(items(up).map((i) => [i[2], i[7]]), [['sensor-1', { temp: 20.5 }]])
  assert.match(await gw.metrics.registry.getSingleMetricAsString('gateway_intake_readings_total'), /outcome="stored"} 1$/m)
  assert.equal((await gw.store.deadLetters()).length, 0)
})

test('issue 19: --auth file, a device produces only its own readings; an app and an anyDevice mapping any; clientIdMustMatch holds the app too', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'auth.json')
  await writeFile(file, JSON.stringify({ devices: { 'plug-1': await hashPassword('p1', 1024) }, apps: { dash: await hashPassword('pa', 1024) } }))
  const up = await startFakeUpstream(t)
  const base = parseGatewayConfig({ argv: [], env: {}, file: { mappings: [{ topic: 'own/+device/power' }, { topic: 'bridge/+device/power', anyDevice: true }, { topic: 'strict/+device/power', clientIdMustMatch: true }] } })
  const gw = await Gateway.create({ ...base, host: '127.0.0.1', mqttPort: 0, adminPort: 0, dataDir: join(dir, 'gw'), upstream: [up.url], token: 'secret-pad-01234', lingerMs: 0, auth: 'file', authFile: file }, silentLogger)
  t.after(() => gw.close())
  const connect = (clientId: string, username: string, password: string): Promise<mqtt.MqttClient> =>
    mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { clientId, username, password, reconnectPeriod: 0 })
  const dev = await connect('plug-1', 'plug-1', 'p1')
  t.after(() => dev.endAsync(true))
  await dev.publishAsync('own/plug-1/power', '12.5', { qos: 1 })
  await dev.publishAsync('bridge/kitchen-plug/power', '13', { qos: 1 }) // opted in: a bridge names devices its own way
  await dev.publishAsync('strict/plug-1/power', '14', { qos: 1 })
  await waitFor(() => items(up).length === 3, { what: 'three mapped readings of the device' })
  await closedBy(dev, 'own/plug-7/power', '15')
  assert.equal(await denied(gw, 'other_device'), 1)

  const app = await connect('dash-1', 'dash', 'pa')
  t.after(() => app.endAsync(true))
  await app.publishAsync('own/plug-7/power', '16', { qos: 1 }) // an app may produce any device's readings
  await waitFor(() => items(up).length === 4, { what: 'the app\'s reading' })
  await closedBy(app, 'strict/plug-7/power', '17')
  assert.equal(await denied(gw, 'client_id'), 1)
  await waitFor(() => gw.store.items === 0, { what: 'the buffer drained' })
  assert.deepEqual(items(up).map((i) => [i[2], i[7]]), [['plug-1', { value: 12.5 }], ['kitchen-plug', { value: 13 }], ['plug-1', { value: 14 }], ['plug-7', { value: 16 }]])
  assert.match(await gw.metrics.registry.getSingleMetricAsString('gateway_intake_readings_total'), /outcome="stored"} 4$/m)
})

test('issue 19: anyDevice is a boolean and contradicts clientIdMustMatch', () => {
  const parse = (m: Record<string, unknown>): unknown => parseGatewayConfig({ argv: [], env: {}, file: { mappings: [{ topic: 'a/+d', ...m }] } })
  assert.throws(() => parse({ anyDevice: 'yes' }), /mappings\[0\]\.anyDevice: must be true or false/)
  assert.throws(() => parse({ anyDevice: true, clientIdMustMatch: true }), /mappings\[0\]\.anyDevice: contradicts clientIdMustMatch/)
  assert.equal((parseGatewayConfig({ argv: [], env: {}, file: { mappings: [{ topic: 'a/+d' }] } }).mappings[0]!.anyDevice), false)
})
