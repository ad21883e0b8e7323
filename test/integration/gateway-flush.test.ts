/**
 * The flusher against a scripted upstream inside the test: per-item results,
 * whole-request outcomes, failover, receipts and ackMode=delivered.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AckCode, decodeReceipt, partitionOf, type ItemResult } from '../../protocol/index.ts'
import { createIngest } from '../../ingest/index.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { startFakeUpstream } from '../helpers/fake-upstream.ts'

const fast = { lingerMs: 0, retryBaseMs: 10, retryMaxMs: 40, token: 'secret-pad-01234' }

test('mixed per-item results give exactly the right deletes, resends and dead letters', async (t) => {
  const seen = new Map<number, number>() // device seq -> times sent
  const up = await startFakeUpstream(t, (req) => ({
    status: 200,
    results: req.items.map((i) => {
      const seq = i[3]!
      const n = (seen.get(seq) ?? 0) + 1
      seen.set(seq, n)
      // seq % 4: 0 stored, 1 duplicate, 2 retry once then stored, 3 rejected
      const code = seq % 4 === 2 ? (n === 1 ? AckCode.Retry : AckCode.Stored) : seq % 4 === 3 ? AckCode.Rejected : seq % 4 === 1 ? AckCode.Duplicate : AckCode.Stored
      return (code === AckCode.Rejected ? [i[0], i[1], code, 'value out of range'] : [i[0], i[1], code]) as ItemResult
    })
  }))
  const gw = await startGateway(t, { ...fast, upstream: [up.url] })
  const c = await connectDevice(t, gw.mqttPort, 'mix-1')
  for (let i = 1; i <= 20; i++) await publish(c, 'devices/mix-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { what: 'buffer drained' })
  // stored/duplicate sent once, retry sent twice, rejected sent once and dead-lettered
  for (let seq = 1; seq <= 20; seq++) assert.equal(seen.get(seq), seq % 4 === 2 ? 2 : 1, `seq ${seq}`)
  assert.equal(gw.store.dlqCount, 5)
  const dl = await gw.store.deadLetters()
  assert.deepEqual(dl.map((d) => d.s).length, 5)
  assert.ok(dl.every((d) => /rejected by the ingest: value out of range/.test(d.reason)))
  const m = await gw.metrics.registry.getSingleMetricAsString('gateway_upstream_items_total')
  assert.match(m, /code="retry"} 5/)
  assert.match(m, /code="rejected"} 5/)
})

test('an item missing from the results or with an unknown code is retried', async (t) => {
  let n = 0
  const up = await startFakeUpstream(t, (req) => {
    n++
    if (n === 1) return { status: 200, results: [[req.items[0]![0], req.items[0]![1], 9 as AckCode]] } // unknown code, others missing
    return { status: 200, results: req.items.map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) }
  })
  const gw = await startGateway(t, { ...fast, upstream: [up.url], lingerMs: 200 })
  const c = await connectDevice(t, gw.mqttPort, 'miss-1')
  for (let i = 1; i <= 3; i++) await publish(c, 'devices/miss-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0)
  assert.equal(up.batches[0]!.items.length, 3)
  assert.deepEqual(up.batches[1]!.items.map((i) => i[3]), [1, 2, 3])
})

test('503 with Retry-After is honoured', async (t) => {
  const at: number[] = []
  const up = await startFakeUpstream(t, (req, n) => {
    at.push(Date.now())
    return n === 1 ? { status: 503, headers: { 'retry-after': '1' } } : { status: 200, results: req.items.map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) }
  })
  const gw = await startGateway(t, { ...fast, upstream: [up.url] })
  const c = await connectDevice(t, gw.mqttPort, 'ra-1')
  await publish(c, 'devices/ra-1/readings', reading(1))
  await waitFor(() => gw.store.items === 0, { timeoutMs: 5000 })
  assert.ok(at[1]! - at[0]! >= 950, `second attempt after ${at[1]! - at[0]!} ms, Retry-After said 1 s`)
})

test('a 400 batch is bisected down to the one poison item, which is dead-lettered', async (t) => {
  const up = await startFakeUpstream(t, (req) => req.items.some((i) => i[3] === 7)
    ? { status: 400, body: JSON.stringify({ error: 'bad_item', message: 'cannot read item' }) }
    : { status: 200, results: req.items.map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) })
  const gw = await startGateway(t, { ...fast, upstream: [up.url], lingerMs: 300 })
  const c = await connectDevice(t, gw.mqttPort, 'poison-1')
  for (let i = 1; i <= 16; i++) await publish(c, 'devices/poison-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0)
  assert.equal(up.stored.size, 15)
  assert.ok(![...up.stored.values()].some((i) => i[3] === 7))
  assert.equal(gw.store.dlqCount, 1)
  const [dl] = await gw.store.deadLetters()
  assert.match(dl!.reason, /400.*cannot read item/)
  // log2(16) = 4 bisection levels: far fewer requests than one per item
  assert.ok(up.requests <= 12, `${up.requests} requests`)
})

test('401 pauses flushing, reports unready and never dead-letters', async (t) => {
  let authOk = false
  const at: number[] = [] // when each request arrived
  const up = await startFakeUpstream(t, (req) => {
    at.push(performance.now())
    return authOk
      ? { status: 200, results: req.items.map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) }
      : { status: 401, body: JSON.stringify({ error: 'unauthorized', message: 'unknown token' }) }
  })
  const gw = await startGateway(t, { ...fast, upstream: [up.url], authRetryMs: 300 })
  const c = await connectDevice(t, gw.mqttPort, 'auth-1')
  for (let i = 1; i <= 5; i++) await publish(c, 'devices/auth-1/readings', reading(i))
  await waitFor(() => !gw.readiness().ready, { what: 'unready on 401' })
  assert.match(gw.readiness().reasons.join(), /auth-failed/)
  const r = await fetch(`http://127.0.0.1:${gw.adminPort}/readyz`)
  assert.equal(r.status, 503)
  // paused, not hammering: proven by the requests that do come, not by a quiet spell (which
  // a slow box passes whatever the flusher does): the next two 401s each come a whole pause
  // after the one before, where the retry back-off alone would resend within 40 ms
  const seen = at.length
  await waitFor(() => at.length >= seen + 2, { timeoutMs: 5000, what: 'two more requests, each after a pause' })
  const gaps = at.slice(seen - 1, seen + 2).map((x, i, a) => i === 0 ? Infinity : x - a[i - 1]!)
  assert.ok(Math.min(...gaps) >= 250, `requests ${gaps.slice(1).map(Math.round).join(', ')} ms apart: not paused for authRetryMs (300 ms)`)
  assert.equal(gw.store.dlqCount, 0)
  assert.equal(gw.store.items, 5)
  authOk = true
  await waitFor(() => gw.store.items === 0, { timeoutMs: 5000 })
  await waitFor(() => gw.readiness().ready)
  assert.equal(gw.store.dlqCount, 0)
})

test('a response lost after the ingest committed ends with the item stored once', async (t) => {
  // the real ingest (LevelDB sink) commits, then drops the connection for half the batches
  const ing = await createIngest({ port: 0, host: '127.0.0.1', token: ['gw1:secret-pad-01234'], dataDir: await tempDir(t), chaosDropRate: 0.5, chaosSeed: 13 })
  t.after(() => ing.close())
  const gw = await startGateway(t, { ...fast, upstream: [`http://127.0.0.1:${ing.port}`], batchMaxItems: 2 })
  const c = await connectDevice(t, gw.mqttPort, 'lost-1')
  for (let i = 1; i <= 10; i++) await publish(c, 'devices/lost-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { timeoutMs: 10_000, what: 'buffer drained' })
  // the copies the sink really holds, read back through its query API
  const page = await ing.sink.queryDevice({ device: 'lost-1', limit: 100 })
  assert.deepEqual(page.readings.map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'each reading stored exactly once')
  const stats = await ing.sink.stats()
  assert.equal(stats.stored, 10)
  // not luck: responses were lost after commits and the resends were answered duplicate
  assert.ok(stats.duplicates >= 1, `no resend after a lost response (duplicates ${stats.duplicates})`)
})

test('several upstream URLs: a dead one fails over to the next', async (t) => {
  const dead = await startFakeUpstream(t)
  await dead.close()
  const live = await startFakeUpstream(t)
  const gw = await startGateway(t, { ...fast, upstream: [dead.url, live.url] })
  const c = await connectDevice(t, gw.mqttPort, 'fo-1')
  for (let i = 1; i <= 5; i++) await publish(c, 'devices/fo-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { timeoutMs: 5000 })
  assert.equal(live.stored.size, 5)
})

test('the body is the section 6 shape: 8-element items, floors per partition, gateway and epoch', async (t) => {
  const up = await startFakeUpstream(t)
  const gw = await startGateway(t, { ...fast, upstream: [up.url], gatewayId: 'gw-shape' })
  const c = await connectDevice(t, gw.mqttPort, 'shape-1')
  await publish(c, 'devices/shape-1/readings', reading(42, { boot: 'b-7', ts: 1_732_680_000_000 }))
  await waitFor(() => up.batches.length === 1)
  const b = up.batches[0]!
  assert.equal(b.v, 1)
  assert.equal(b.gateway, 'gw-shape')
  assert.equal(b.epoch, gw.store.epoch)
  const p = partitionOf('shape-1', 8)
  assert.deepEqual(b.floors, [[p, 0]])
  const [ip, is, dev, seq, boot, ts, rx, values] = b.items[0]!
  assert.deepEqual([ip, is, dev, seq, boot, ts], [p, 0, 'shape-1', 42, 'b-7', 1_732_680_000_000])
  assert.ok(Math.abs(rx - Date.now()) < 10_000)
  assert.deepEqual({ ...values }, { t: 21.5, h: 40 })
})

test('receipts: after an acked batch each device gets { boot, upTo, rejected }', async (t) => {
  const up = await startFakeUpstream(t, (req) => ({
    status: 200,
    results: req.items.map((i) => (i[3] === 3 ? [i[0], i[1], AckCode.Rejected, 'bad'] : [i[0], i[1], AckCode.Stored]) as ItemResult)
  }))
  const gw = await startGateway(t, { ...fast, upstream: [up.url], lingerMs: 300 })
  const c = await connectDevice(t, gw.mqttPort, 'rcpt-1')
  const receipts: unknown[] = []
  await c.subscribeAsync('devices/rcpt-1/receipts', { qos: 1 })
  c.on('message', (_topic, payload) => receipts.push(decodeReceipt(payload)))
  for (let i = 1; i <= 5; i++) await publish(c, 'devices/rcpt-1/readings', reading(i))
  await waitFor(() => receipts.length >= 1)
  assert.deepEqual(receipts[0], { boot: 1, upTo: 5, rejected: [3] })
})

test('ackMode=delivered: no PUBACK before the ingest stored the reading', async (t) => {
  let release: (() => void) | null = null
  const gate = new Promise<void>((r) => { release = r })
  const events: string[] = []
  const up = await startFakeUpstream(t, async (req) => {
    await gate
    events.push('stored')
    return { status: 200, results: req.items.map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) }
  })
  const gw = await startGateway(t, { ...fast, upstream: [up.url], ackMode: 'delivered' })
  const c = await connectDevice(t, gw.mqttPort, 'dlv-1')
  const p = publish(c, 'devices/dlv-1/readings', reading(1)).then(() => { events.push('puback') })
  await waitFor(() => up.requests === 1, { what: 'batch reached the ingest' })
  assert.equal(gw.store.items, 1, 'on disk')
  // a round trip on the same connection, begun after the batch reached the ingest: a PUBACK
  // sent when the reading reached the disk (before the batch) comes in ahead of this SUBACK
  await c.subscribeAsync('devices/dlv-1/receipts', { qos: 1 })
  assert.deepEqual(events, [], 'no PUBACK while the ingest has not answered')
  release!()
  await p
  assert.deepEqual(events, ['stored', 'puback'], 'the PUBACK follows the ingest\'s answer')
  // a retransmit of a delivered reading is acknowledged at once (it is upstream already)
  await publish(c, 'devices/dlv-1/readings', reading(1))
  assert.equal(up.stored.size, 1)
})
