/**
 * The intake's overload admission on a real gateway (Aedes, LevelDB, MQTT.js devices): held
 * readings keep their device's PUBACK order, are stored once, wait for their admission, and
 * a shutdown with readings held loses nothing acknowledged.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { MqttClient } from 'mqtt'
import { tempDir } from '../helpers/index.ts'
import { connectDevice, reading, startGateway } from '../helpers/gateway.ts'
import type { Gateway } from '../../gateway/index.ts'
import { decodeTrusted, type BatchItem } from '../../protocol/index.ts'

/** `n` QoS 1 readings from `c` at once; resolves with PUBACK order and send order. */
function flood (c: MqttClient, device: string, n: number): Promise<{ sent: number[], acked: number[] }> {
  const sent: number[] = []
  const acked: number[] = []
  c.on('packetsend', (p) => { if (p.cmd === 'publish') sent.push(p.messageId!) })
  c.on('packetreceive', (p) => { if (p.cmd === 'puback') acked.push(p.messageId!) })
  return Promise.all(Array.from({ length: n }, (_, i) => c.publishAsync(`devices/${device}/readings`, reading(i + 1), { qos: 1 }))).then(() => ({ sent, acked }))
}

function limited (gw: Gateway, perS: number): NonNullable<Gateway['intake']['admission']> {
  const a = gw.intake.admission
  assert.ok(a, 'the admission is on by default')
  a.close() // no controller: the test sets the limit
  a.limitTo(perS, 'test')
  return a
}

test('readings waiting for admission keep each device\'s PUBACK order, wait for the limit, and are stored once', async (t) => {
  const gw = await startGateway(t)
  const a = limited(gw, 1000)
  const devices = ['ov-1', 'ov-2', 'ov-3']
  let maxHeld = 0
  const sample = setInterval(() => { maxHeld = Math.max(maxHeld, a.held) }, 5)
  t.after(() => clearInterval(sample))
  const t0 = performance.now()
  const results = await Promise.all(devices.map(async (d) => flood(await connectDevice(t, gw.mqttPort, d), d, 500)))
  const ms = performance.now() - t0
  clearInterval(sample)
  for (const [i, r] of results.entries()) assert.deepEqual(r.acked, r.sent, `${devices[i]!}: PUBACK order is publish order`)
  assert.equal(gw.store.items, 1500, 'every reading stored once')
  assert.ok(a.heldTotal > 1000, `readings waited (${a.heldTotal})`)
  assert.ok(maxHeld > 0)
  // 1,500 readings at 1,000/s: not before about 1.4 s (the first tenth of a second may pass unlimited)
  assert.ok(ms >= 1300, `took ${Math.round(ms)} ms at a limit of 1,000/s`)
  assert.equal(a.held, 0)
})

test('a gateway closed with readings waiting stores them or leaves them unacknowledged: nothing acknowledged is lost', async (t) => {
  const dir = await tempDir(t)
  let gw = await startGateway(t, { dataDir: dir })
  limited(gw, 50)
  const c = await connectDevice(t, gw.mqttPort, 'ov-close')
  const acked = new Set<number>()
  const seqOf = new Map<number, number>()
  c.on('packetsend', (p) => { if (p.cmd === 'publish') seqOf.set(p.messageId!, seqOf.size + 1) })
  c.on('packetreceive', (p) => { if (p.cmd === 'puback') acked.add(seqOf.get(p.messageId!)!) })
  for (let i = 1; i <= 300; i++) c.publish('devices/ov-close/readings', reading(i), { qos: 1 })
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.ok(gw.intake.admission!.held > 0, 'readings are waiting when the gateway closes')
  await gw.close()
  await c.endAsync(true)
  gw = await startGateway(t, { dataDir: dir })
  const stored = new Set<number>()
  for await (const [, v] of gw.store.db.iterator({ gt: 'i!', lt: 'i"' })) stored.add((decodeTrusted(v) as BatchItem)[3]!)
  assert.ok(acked.size > 0, 'some were acknowledged before the close')
  assert.ok(acked.size < 300, 'and some not: they were held')
  const lost = [...acked].filter((s) => !stored.has(s))
  assert.deepEqual(lost, [], 'every acknowledged reading is stored')
  assert.equal(stored.size, gw.store.items, 'none stored twice')
})
