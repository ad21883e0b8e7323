/**
 * Issue 15, "bring your own devices": topic mappings from the config file, one test per
 * payload shape, published by a real client (mosquitto_pub, QoS 1: it exits 0 only after
 * the PUBACK), and the example configs in docs/examples/ against their firmwares' topics.
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
  try {
    await promisify(execFile)('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-i', clientId, '-t', topic, '-m', message], { timeout: 15_000 })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error('mosquitto_pub not found: install the Debian package mosquitto-clients')
    throw err
  }
}

const items = (up: FakeUpstream): Item[] => up.batches.flatMap((b) => b.items as unknown as Item[])

test('a nested JSON object (Tasmota tele/+/SENSOR) is flattened into numeric values, rx-based', async (t) => {
  const { gw, up } = await start(t, [{ topic: 'tele/+device/SENSOR' }])
  await mosquittoPub(gw.mqttPort, 'DVES_1A2B3C', 'tele/kitchen/SENSOR', '{"Time":"2026-01-01T10:00:00","AM2301":{"Temperature":21.3,"Humidity":45.2},"Switch1":true,"TempUnit":"C"}')
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
  const { gw, up } = await start(t, [{ topic: 'home/+room/climate', device: 'room-{room}', seq: 'n', values: { t: 'sensor.t', on: 'heater' } }])
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
  }
  assert.throws(() => parseGatewayConfig({ argv: [], env: {}, file: { mappings: [{ topic: 'devices/+id/x' }] } }), /mappings\[0\]\.topic: must start with a fixed segment outside devices/)
  assert.throws(() => parseGatewayConfig({ argv: [], env: {}, file: { mappings: [{ topic: 'a/+x', device: '{y}' }] } }), /\{y\} is not a named segment/)
})

test('--auth file: a device principal may publish a mapped topic; clientIdMustMatch holds it to its own device id', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'auth.json')
  await writeFile(file, JSON.stringify({ devices: { 'plug-1': await hashPassword('p1', 1024) } }))
  const up = await startFakeUpstream(t)
  const base = parseGatewayConfig({ argv: [], env: {}, file: { mappings: [{ topic: 'free/+device/power' }, { topic: 'strict/+device/power', clientIdMustMatch: true }] } })
  const gw = await Gateway.create({ ...base, host: '127.0.0.1', mqttPort: 0, adminPort: 0, dataDir: join(dir, 'gw'), upstream: [up.url], token: 'secret-pad-01234', lingerMs: 0, auth: 'file', authFile: file }, silentLogger)
  t.after(() => gw.close())
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { clientId: 'plug-1', username: 'plug-1', password: 'p1', reconnectPeriod: 0 })
  t.after(() => c.endAsync(true))
  await c.publishAsync('free/kitchen-plug/power', '12.5', { qos: 1 }) // firmware topics name the device their own way
  await c.publishAsync('strict/plug-1/power', '13', { qos: 1 })
  await waitFor(() => items(up).length === 2, { what: 'two mapped readings' })
  assert.deepEqual(items(up).map((i) => i[2]), ['kitchen-plug', 'plug-1'])
  const closed = new Promise<void>((resolve) => c.once('close', () => resolve()))
  c.publish('strict/other-plug/power', '14', { qos: 1 })
  await closed // refused: the connection is closed
  assert.equal(items(up).length, 2)
})
