/**
 * Intake with real Aedes, real LevelDB in temp dirs and real MQTT.js clients.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect } from 'node:net'
import { AckCode, decodeTrusted, partitionOf, type BatchItem, type ItemResult } from '../../protocol/index.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { startFakeUpstream } from '../helpers/fake-upstream.ts'
import type { Gateway } from '../../gateway/index.ts'

async function bufferedItems (gw: Gateway): Promise<BatchItem[]> {
  const out: BatchItem[] = []
  for await (const [k, v] of gw.store.db.iterator({ gt: 'i!', lt: 'i"' })) { void k; out.push(decodeTrusted(v) as BatchItem) }
  return out
}

test('PUBACKs come back in publish order even when later readings commit first', async (t) => {
  const gw = await startGateway(t)
  // the first reading's dedup window is loaded slowly; the second reading (no seq) needs
  // no window and commits first
  const load = gw.store.dedup.read.bind(gw.store.dedup)
  let slow = true
  gw.store.dedup.read = async (d: string) => {
    if (slow) { slow = false; await new Promise((r) => setTimeout(r, 300)) }
    return load(d)
  }
  const c = await connectDevice(t, gw.mqttPort, 'order-1')
  const acks: number[] = []
  c.on('packetreceive', (p) => { if (p.cmd === 'puback') acks.push(p.messageId!) })
  const sent: number[] = []
  c.on('packetsend', (p) => { if (p.cmd === 'publish') sent.push(p.messageId!) })
  const ps = [publish(c, 'devices/order-1/readings', reading(1))]
  for (let i = 0; i < 20; i++) ps.push(publish(c, 'devices/order-1/readings', reading(null)))
  await Promise.all(ps)
  assert.equal(acks.length, 21)
  assert.deepEqual(acks, sent, 'PUBACK order must equal publish order [MQTT-4.6.0-2]')
  // every reading is buffered once (gateway seqs follow commit order, not publish order)
  assert.equal((await bufferedItems(gw)).length, 21)
})

test('5,000 readings from 20 devices are acknowledged and buffered with increasing seqs', async (t) => {
  const gw = await startGateway(t)
  await Promise.all(Array.from({ length: 20 }, async (_, d) => {
    const c = await connectDevice(t, gw.mqttPort, `bulk-${d}`)
    const ps: Promise<void>[] = []
    for (let i = 1; i <= 250; i++) ps.push(publish(c, `devices/bulk-${d}/readings`, reading(i)))
    await Promise.all(ps)
  }))
  assert.equal(gw.store.items, 5000)
  const items = await bufferedItems(gw)
  assert.equal(items.length, 5000)
  // per device, device seq order == gateway seq order inside its partition
  const byDev = new Map<string, BatchItem[]>()
  for (const it of items) byDev.set(it[2], [...(byDev.get(it[2]) ?? []), it])
  for (const [dev, its] of byDev) {
    assert.equal(its.length, 250, dev)
    const p = partitionOf(dev, 8)
    assert.ok(its.every((i) => i[0] === p))
    its.sort((a, b) => a[1] - b[1])
    assert.deepEqual(its.map((i) => i[3]), Array.from({ length: 250 }, (_, i) => i + 1))
  }
})

test('retransmits of stored seqs are acknowledged and not stored again, also after a restart; a new boot starts a new window', async (t) => {
  const dir = await tempDir(t)
  let gw = await startGateway(t, { dataDir: dir })
  let c = await connectDevice(t, gw.mqttPort, 'dup-1')
  for (let i = 1; i <= 5; i++) await publish(c, 'devices/dup-1/readings', reading(i))
  for (let i = 1; i <= 5; i++) await publish(c, 'devices/dup-1/readings', reading(i))
  assert.equal(gw.store.items, 5)
  await c.endAsync()
  await gw.close()
  gw = await startGateway(t, { dataDir: dir })
  c = await connectDevice(t, gw.mqttPort, 'dup-1')
  await publish(c, 'devices/dup-1/readings', reading(3))
  await publish(c, 'devices/dup-1/readings', reading(5))
  assert.equal(gw.store.items, 5, 'a retransmit after restart must not be stored again')
  await publish(c, 'devices/dup-1/readings', reading(6))
  assert.equal(gw.store.items, 6)
  // new boot: seq restarts at 1 and is new
  await publish(c, 'devices/dup-1/readings', reading(1, { boot: 2 }))
  await publish(c, 'devices/dup-1/readings', reading(2, { boot: 2 }))
  await publish(c, 'devices/dup-1/readings', reading(1, { boot: 2 }))
  assert.equal(gw.store.items, 8)
  // a late retransmit from the previous boot is still recognised
  await publish(c, 'devices/dup-1/readings', reading(4, { boot: 1 }))
  assert.equal(gw.store.items, 8)
  // this process saw 3, 5, boot-2 seq 1 and boot-1 seq 4 again
  const m = await gw.metrics.registry.getSingleMetricAsString('gateway_intake_readings_total')
  assert.match(m, /outcome="duplicate"} 4/)
})

test('invalid payloads are acknowledged and dead-lettered with their reason', async (t) => {
  const gw = await startGateway(t)
  const c = await connectDevice(t, gw.mqttPort, 'bad-1')
  await publish(c, 'devices/bad-1/readings', Buffer.from([0xa1, 0x63])) // truncated CBOR
  await publish(c, 'devices/bad-1/readings', JSON.stringify({ seq: 1, values: { t: 'x'.repeat(300) } }))
  await publish(c, 'devices/bad-1/readings', JSON.stringify({ seq: 2, values: {} }))
  await publish(c, 'devices/bad-1/readings', reading(3))
  assert.equal(gw.store.items, 1)
  assert.equal(gw.store.dlqCount, 3)
  const dl = await gw.store.deadLetters()
  assert.equal(dl.length, 3)
  assert.match(dl[0]!.reason, /CBOR/)
  assert.match(dl[1]!.reason, /values\.t: text longer than 256 bytes/)
  assert.match(dl[2]!.reason, /values: must have at least one entry/)
  assert.equal(dl[0]!.device, 'bad-1')
  assert.deepEqual(Buffer.from(dl[0]!.raw), Buffer.from([0xa1, 0x63]))
})

test('what a reading may not hold is dead-lettered naming the field; -0 is stored as -0 on both decoding paths', async (t) => {
  // These used to be stored changed: an integer key 1 as the value name "1", the last of two
  // equal names, invalid UTF-8 with U+FFFD in place of the bad bytes, -0 as 0.
  const gw = await startGateway(t)
  const c = await connectDevice(t, gw.mqttPort, 'fid-1')
  const bad: Array<[string, RegExp]> = [
    ['a3 63736571 01 66 76616c756573 a1 61 74 01 01 02', /^payload: map key at byte 17 is the integer 1, not text$/],
    ['a2 63736571 02 66 76616c756573 a1 01 02', /^values: map key at byte 14 is the integer 1, not text$/],
    ['a2 63736571 03 66 76616c756573 a2 61 74 01 61 74 02', /^values: map key "t" at byte 17 appears twice$/],
    ['a2 63736571 04 66 76616c756573 a1 61 73 62 c328', /^values\.s: text at byte 16 is not valid UTF-8$/]
  ]
  for (const [h] of bad) await publish(c, 'devices/fid-1/readings', Buffer.from(h.replace(/ /g, ''), 'hex'))
  // -0 as a half (the scanner takes it) and inside a reading only the decoder takes (non-ASCII text)
  await publish(c, 'devices/fid-1/readings', Buffer.from('a2637365710566' + '76616c756573a16174f98000', 'hex'))
  await publish(c, 'devices/fid-1/readings', Buffer.from('a2637365710666' + '76616c756573a26174fb80000000000000006173' + '62c3a9', 'hex'))
  const dl = await gw.store.deadLetters()
  assert.deepEqual(dl.map((d) => d.device), ['fid-1', 'fid-1', 'fid-1', 'fid-1'], dl.map((d) => d.reason).join('; '))
  bad.forEach(([, reason], i) => assert.match(dl[i]!.reason, reason))
  const items = await bufferedItems(gw)
  assert.deepEqual(items.map((i) => i[3]), [5, 6])
  for (const item of items) assert.ok(Object.is(item[7].t, -0), `seq ${item[3]}: t stored as ${item[7].t}`)
  assert.equal(items[1]![7].s, 'é')
})

test('a device that publishes to another device\'s topic is disconnected and nothing is stored', async (t) => {
  const gw = await startGateway(t)
  const c = await connectDevice(t, gw.mqttPort, 'mallory')
  await assert.rejects(publish(c, 'devices/alice/readings', reading(1)), /closed/)
  assert.equal(gw.store.items, 0)
  const c2 = await connectDevice(t, gw.mqttPort, 'mallory2')
  await assert.rejects(publish(c2, 'devices/mallory2/receipts', reading(1)), /closed/)
})

test('a zero-byte client id with CleanSession=0 is refused with CONNACK 0x02 [MQTT-3.1.3-8]', async (t) => {
  const gw = await startGateway(t)
  // MQTT.js refuses to send this CONNECT, so write it by hand: protocol MQTT 3.1.1,
  // flags 0 (CleanSession=0), keepalive 60, client id of zero bytes
  const sock = netConnect(gw.mqttPort, '127.0.0.1')
  t.after(() => sock.destroy())
  sock.write(Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 60, 0, 0]))
  const reply = await new Promise<Buffer>((resolve) => sock.once('data', resolve))
  assert.equal(reply[0], 0x20, 'CONNACK')
  const code = reply[3]
  assert.equal(code, 2)
})

test('an oversize packet closes the connection before its body is buffered', async (t) => {
  const gw = await startGateway(t, { maxPacketBytes: 64 * 1024 })
  const c = await connectDevice(t, gw.mqttPort, 'big-ok')
  await publish(c, 'devices/big-ok/readings', reading(1)) // normal traffic works
  const sock = netConnect(gw.mqttPort, '127.0.0.1')
  await new Promise((r) => sock.once('connect', r))
  let closed = false
  sock.on('close', () => { closed = true })
  sock.on('error', () => {})
  // CONNECT for client "big", then a PUBLISH declaring 200 MB, then 20 MB of body
  const connect = Buffer.from([0x10, 15, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 2, 0, 60, 0, 3, 0x62, 0x69, 0x67])
  sock.write(connect)
  const before = process.memoryUsage()
  sock.write(Buffer.from([0x32, 0x80, 0x80, 0x80, 0x60])) // remaining length 201,326,592
  const chunk = Buffer.alloc(1024 * 1024, 0x41)
  for (let i = 0; i < 20 && !closed; i++) {
    if (!sock.write(chunk)) await new Promise((r) => { sock.once('drain', r); sock.once('close', r) })
  }
  await waitFor(() => closed, { timeoutMs: 5000, what: 'oversize connection closed' })
  const after = process.memoryUsage()
  assert.ok(after.arrayBuffers - before.arrayBuffers < 8 * 1024 * 1024, `buffers grew by ${after.arrayBuffers - before.arrayBuffers} bytes`)
  const m = await gw.metrics.registry.getSingleMetricAsString('gateway_oversize_packets_total')
  assert.match(m, /gateway_oversize_packets_total 1/)
  await publish(c, 'devices/big-ok/readings', reading(2)) // others unaffected
  assert.equal(gw.store.items, 2)
})

test('quota with fullPolicy=block stops acknowledging and resumes when space frees', async (t) => {
  let accept = false
  const up = await startFakeUpstream(t, (req) => accept
    ? { status: 200, results: req.items.map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) }
    : { status: 503, headers: { 'retry-after': '0' } })
  const gw = await startGateway(t, { maxBufferItems: 10, fullPolicy: 'block', upstream: [up.url], token: 'x-pad-0123456789', lingerMs: 0, retryBaseMs: 20, retryMaxMs: 50 })
  const c = await connectDevice(t, gw.mqttPort, 'full-1')
  for (let i = 1; i <= 10; i++) await publish(c, 'devices/full-1/readings', reading(i))
  let acked = false
  const eleventh = publish(c, 'devices/full-1/readings', reading(11)).then(() => { acked = true })
  await waitFor(() => up.requests >= 2, { what: 'flusher retrying against a 503' })
  assert.equal(acked, false, 'no PUBACK while the buffer is full')
  assert.equal(gw.store.items, 10)
  accept = true
  await eleventh
  await waitFor(() => up.stored.size === 11, { what: 'all 11 delivered' })
  assert.deepEqual([...up.stored.values()].map((i) => i[3]).sort((a, b) => a! - b!), Array.from({ length: 11 }, (_, i) => i + 1))
})

test('quota with fullPolicy=drop-oldest evicts the oldest and reports the exact ranges upstream', async (t) => {
  const dir = await tempDir(t)
  let gw = await startGateway(t, { dataDir: dir, maxBufferItems: 10, fullPolicy: 'drop-oldest' })
  const c = await connectDevice(t, gw.mqttPort, 'drop-1')
  for (let i = 1; i <= 15; i++) await publish(c, 'devices/drop-1/readings', reading(i))
  await waitFor(() => gw.store.items === 10, { what: 'buffer back at quota' })
  const p = partitionOf('drop-1', 8)
  assert.deepEqual(gw.store.pendingEvicted(), [[p, 0, 4]])
  const left = (await bufferedItems(gw)).map((i) => i[3])
  assert.deepEqual(left, [6, 7, 8, 9, 10, 11, 12, 13, 14, 15])
  await c.endAsync()
  await gw.close()
  // the ranges survive a restart and go upstream with the next batch, then are forgotten
  const up = await startFakeUpstream(t)
  gw = await startGateway(t, { dataDir: dir, maxBufferItems: 10, fullPolicy: 'drop-oldest', upstream: [up.url], token: 'x-pad-0123456789', lingerMs: 0 })
  await waitFor(() => up.stored.size === 10, { what: 'drained' })
  assert.deepEqual(up.batches[0]!.evicted, [[p, 0, 4]])
  await waitFor(() => gw.store.pendingEvicted().length === 0, { what: 'evicted ranges forgotten after the ack' })
})

test('a failed LevelDB write yields no PUBACK and closes the connection; the resend is stored once', async (t) => {
  const gw = await startGateway(t)
  const c = await connectDevice(t, gw.mqttPort, 'fail-1')
  await publish(c, 'devices/fail-1/readings', reading(1))
  const db = gw.store.db
  const realBatch = db.batch.bind(db)
  let failing = true
  ;(db as unknown as { batch: () => unknown }).batch = () => {
    const b = realBatch()
    if (!failing) return b
    b.write = async () => { throw new Error('injected: disk on fire') }
    return b
  }
  await assert.rejects(publish(c, 'devices/fail-1/readings', reading(2)), /closed/)
  assert.equal(gw.store.items, 1)
  failing = false
  const c2 = await connectDevice(t, gw.mqttPort, 'fail-1')
  await publish(c2, 'devices/fail-1/readings', reading(2))
  await publish(c2, 'devices/fail-1/readings', reading(2))
  assert.equal(gw.store.items, 2)
  assert.deepEqual((await bufferedItems(gw)).map((i) => i[3]), [1, 2])
})

test('starting with a different --partitions than the store was created with is a clear error', async (t) => {
  const dir = await tempDir(t)
  const gw = await startGateway(t, { dataDir: dir, partitions: 8 })
  await gw.close()
  await assert.rejects(startGateway(t, { dataDir: dir, partitions: 4 }), (err: Error & { field?: string }) => {
    assert.equal(err.field, 'partitions')
    assert.match(err.message, /created with 8 partitions, started with 4/)
    return true
  })
})
