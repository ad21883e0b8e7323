/**
 * The MQTT upstream end to end (issue 20), with a real Mosquitto 2.0 as the cloud broker:
 * devices -> gateway -> Mosquitto -> ingest consumer -> results -> the gateway deletes.
 * Results mode (two-phase), per-item retry/reject over MQTT, broker mode with a plain
 * subscriber, the results timeout (resend, answered duplicate) and the message size bound.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { gunzipSync } from 'node:zlib'
import mqtt from 'mqtt'
import { createSimulation, runAudit, simConfig, waitForDrain } from '../../device-sim/index.ts'
import { createIngest, type Ingest, type IngestOptions } from '../../ingest/index.ts'
import { AckCode, decodeBatch, decodeResultsHeader, encodeBatch, encodeResultsMessage, sniffEncoding, type BatchItem, type ItemResult } from '../../protocol/index.ts'
import { connectDevice, publish, reading, silentLogger, startGateway } from '../helpers/gateway.ts'
import { metricValue } from '../helpers/mqtt-from.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

const fast = { lingerMs: 50, retryBaseMs: 20, retryMaxMs: 200 }

async function startIngest (t: { after: (fn: () => unknown) => void }, broker: string, opts: IngestOptions = {}): Promise<Ingest> {
  const dir = await tempDir(t, 'ingest-mqtt-')
  const ingest = await createIngest({ port: 0, dataDir: dir, mqttBroker: broker, mqttClientId: `ingest-${Math.random().toString(36).slice(2)}`, ...opts }, { logger: silentLogger })
  t.after(() => ingest.close())
  await waitFor(() => ingest.mqtt?.ready, { what: 'ingest subscribed' })
  return ingest
}

async function storedSeqs (ingest: Ingest, device: string): Promise<number[]> {
  const res = await fetch(`http://127.0.0.1:${ingest.port}/v1/devices/${device}/readings?limit=1000`)
  const body = await res.json() as { readings: { seq: number }[] }
  return body.readings.map((r) => r.seq)
}

test('results mode: simulated devices -> gateway -> Mosquitto -> ingest; every reading stored exactly once, then deleted', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  // three connections in the share group: batches of one gateway handled side by side
  const ingest = await startIngest(t, broker.url, { mqttConnections: 3 })
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-mq1' })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed to its results' })
  const sim = createSimulation(simConfig({ broker: `mqtt://127.0.0.1:${gw.mqttPort}`, progress: 'off', devices: 10, rate: 20, count: 20, idPrefix: 'mq-res-' }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(15_000)
  await sim.done
  await sim.stop()
  const drain = await waitForDrain({ ingestUrl: `http://127.0.0.1:${ingest.port}`, gatewayAdmin: `http://127.0.0.1:${gw.adminPort}`, timeoutMs: 20_000 })
  assert.equal(drain.settled, true, 'gateway drained')
  assert.equal(sim.stats.counters.acked, 200)
  const audit = await runAudit(sim.records(), { ingestUrl: `http://127.0.0.1:${ingest.port}` })
  assert.equal(audit.ok, true, JSON.stringify(audit.failures.slice(0, 2)))
  assert.equal(audit.totals.stored, 200)
  assert.equal(audit.totals.lost + audit.totals.duplicated + audit.totals.outOfOrder, 0)
  await waitFor(() => gw.store.items === 0, { what: 'items deleted on the results' })
  const st = gw.flusher.status()
  assert.equal(st.state, 'ok')
  assert.equal(st.mqtt?.connected, true)
  assert.equal(st.mqtt?.inFlight, 0)
  assert.equal(await metricValue(ingest.metrics.registry, 'ingest_items_total', { code: 'stored' }), 200)
  // the results' MQTT 5 user properties ingest-protocols and ingest-encodings moved the
  // gateway (auto) to v2 and brotli, marked by the batch's content-encoding property
  assert.ok(await metricValue(ingest.metrics.registry, 'ingest_received_bytes_total', { encoding: 'br', version: '2' }) > 0, 'negotiated v2 and br')
})

test('results mode: per-item retry and reject codes over MQTT are retried and dead-lettered', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const ingest = await startIngest(t, broker.url, { chaosRetryRate: 0.2, chaosRejectRate: 0.1, chaosSeed: 7 })
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-mq2' })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed' })
  const c = await connectDevice(t, gw.mqttPort, 'mq-chaos-1')
  for (let i = 1; i <= 60; i++) await publish(c, 'devices/mq-chaos-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { timeoutMs: 20_000, what: 'every item answered' })
  const rejected = await metricValue(ingest.metrics.registry, 'ingest_items_total', { code: 'rejected' })
  const retried = await metricValue(ingest.metrics.registry, 'ingest_items_total', { code: 'retry' })
  assert.ok(rejected > 0 && retried > 0, `chaos landed: ${rejected} rejected, ${retried} retried`)
  assert.equal(gw.store.dlqCount, rejected, 'each rejected item dead-lettered, nothing else')
  const dl = await gw.store.deadLetters()
  assert.ok(dl.every((d) => /injected rejected/.test(d.reason)), dl[0]?.reason)
  const stored = await storedSeqs(ingest, 'mq-chaos-1')
  assert.equal(stored.length + rejected, 60, 'every reading stored or dead-lettered')
  assert.equal(new Set(stored).size, stored.length, 'none stored twice')
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_upstream_items_total', { code: 'retry' }), retried, 'the gateway saw every retry')
})

test('results mode: a batch without results is sent again after --results-timeout-ms and answered duplicate', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  // every other batch is committed and its results dropped (chaos drop)
  const ingest = await startIngest(t, broker.url, { chaosDropRate: 0.5, chaosSeed: 3 })
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-mq3', resultsTimeoutMs: 300 })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed' })
  const c = await connectDevice(t, gw.mqttPort, 'mq-drop-1')
  for (let i = 1; i <= 20; i++) await publish(c, 'devices/mq-drop-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { timeoutMs: 20_000, what: 'every item answered' })
  assert.ok(await metricValue(ingest.metrics.registry, 'ingest_chaos_injected_total', { kind: 'drop' }) > 0, 'a result was dropped (not luck)')
  assert.ok(await metricValue(ingest.metrics.registry, 'ingest_items_total', { code: 'duplicate' }) > 0, 'the resend was answered duplicate')
  assert.ok(await metricValue(gw.metrics.registry, 'gateway_upstream_batches_total', { outcome: 'network_error' }) > 0, 'the gateway timed out at least once')
  const stored = await storedSeqs(ingest, 'mq-drop-1')
  assert.deepEqual(stored, Array.from({ length: 20 }, (_, i) => i + 1), 'each reading stored once, in order')
})

test('results mode: late results, unknown batch ids and garbage on the results topic are counted and ignored', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  // a hand-written consumer: answers each batch twice, the second time late, plus noise
  const consumer = await mqtt.connectAsync(broker.url, { clientId: 'fake-consumer', protocolVersion: 5 })
  t.after(() => consumer.endAsync(true))
  await consumer.subscribeAsync('gateways/+/batches/+', { qos: 1 })
  const answered: string[] = []
  consumer.on('message', (topic, payload) => {
    // results mode compresses (gzip) by default: the first bytes say so
    const b = decodeBatch(sniffEncoding(payload) === 'gzip' ? gunzipSync(payload) : payload, { maxItems: 10000 })
    const results = b.items.map((it) => [(it as BatchItem)[0], (it as BatchItem)[1], AckCode.Stored] as ItemResult)
    const msg = encodeResultsMessage(1, b.batch, { results })
    answered.push(b.batch)
    const rt = `gateways/${b.gateway}/results`
    consumer.publish(rt, msg, { qos: 1 })
    setTimeout(() => {
      consumer.publish(rt, msg, { qos: 1 }) // late: the batch is settled
      consumer.publish(rt, encodeResultsMessage(1, 'no-such-batch', { results }), { qos: 1 })
      consumer.publish(rt, Buffer.from('not cbor at all'), { qos: 1 })
    }, 50)
    void topic
  })
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-mq4' })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed' })
  const c = await connectDevice(t, gw.mqttPort, 'mq-late-1')
  for (let i = 1; i <= 5; i++) await publish(c, 'devices/mq-late-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { what: 'answered' })
  await waitFor(() => (gw.flusher.status().mqtt?.lateResults ?? 0) >= 2 * answered.length && (gw.flusher.status().mqtt?.badResults ?? 0) >= answered.length, { what: 'noise counted' })
  assert.equal(gw.store.dlqCount, 0)
  assert.equal(gw.flusher.status().state, 'ok')
  assert.ok(await metricValue(gw.metrics.registry, 'gateway_upstream_mqtt_ignored_results_total', { reason: 'late' }) >= 2 * answered.length)
  assert.ok(await metricValue(gw.metrics.registry, 'gateway_upstream_mqtt_ignored_results_total', { reason: 'unreadable' }) >= answered.length)
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_upstream_mqtt_connected'), 1)
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_upstream_mqtt_in_flight_batches'), 0)
})

test('broker mode: a plain subscriber gets every batch, each within the message size bound; items deleted on PUBACK', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const sub = await mqtt.connectAsync(broker.url, { clientId: 'plain-sub', protocolVersion: 5 })
  t.after(() => sub.endAsync(true))
  await sub.subscribeAsync('gateways/gw-mq5/batches/+', { qos: 1 })
  const got: { topic: string, bytes: number, items: BatchItem[], epoch: string }[] = []
  sub.on('message', (topic, payload) => {
    const b = decodeBatch(payload, { maxItems: 10000 }) // plain CBOR: broker mode does not compress by default
    got.push({ topic, bytes: payload.length, items: b.items as BatchItem[], epoch: b.epoch })
  })
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-mq5', upstreamAck: 'broker', upstreamMaxMessageBytes: 2048 })
  await waitFor(() => gw.flusher.status().mqtt?.connected, { what: 'gateway connected' })
  const c = await connectDevice(t, gw.mqttPort, 'mq-plain-1')
  for (let i = 1; i <= 60; i++) await publish(c, 'devices/mq-plain-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { what: 'deleted after PUBACK' })
  const seqs = await waitFor(() => {
    const s = got.flatMap((g) => g.items.map((i) => i[3]))
    return s.length >= 60 ? s : null
  }, { what: 'subscriber got every reading' })
  // dedup by (gateway, epoch, partition, seq), as a consumer must: exactly the 60 readings
  const keys = new Set(got.flatMap((g) => g.items.map((i) => `${g.epoch}/${i[0]}/${i[1]}`)))
  assert.equal(keys.size, 60)
  assert.deepEqual([...new Set(seqs)].sort((a, b) => a! - b!), Array.from({ length: 60 }, (_, i) => i + 1))
  assert.ok(got.length > 1, `the 2 KiB bound split the readings over ${got.length} batches`)
  assert.ok(got.every((g) => g.bytes <= 2048), `largest payload ${Math.max(...got.map((g) => g.bytes))} bytes`)
  assert.ok(got.every((g) => /^gateways\/gw-mq5\/batches\/\d+$/.test(g.topic)))
  assert.equal(gw.flusher.status().mqtt?.ack, 'broker')
})

test('results mode without any consumer: the PUBACK\'s "no matching subscribers" fails the batch at once; nothing is deleted', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  // a results timeout far beyond the test: the failure must come from the PUBACK (0x10)
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-mq6', resultsTimeoutMs: 600_000 })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed' })
  const c = await connectDevice(t, gw.mqttPort, 'mq-none-1')
  for (let i = 1; i <= 3; i++) await publish(c, 'devices/mq-none-1/readings', reading(i))
  await waitFor(() => gw.flusher.status().lastError !== null, { what: 'the upstream failed' })
  assert.equal(gw.store.items, 3, 'nothing deleted without results')
  assert.match(gw.flusher.status().lastError!, /no consumer is subscribed to gateways\/gw-mq6\/batches\/\d+/)
  assert.equal(gw.flusher.status().mqtt?.inFlight, 0, 'not waiting for results that cannot come')
})

test('results mode: a whole-batch 400 in the results is bisected down to the poison item, which is dead-lettered', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  // a consumer that cannot read any batch holding device seq 7: it answers { status: 400 }
  const consumer = await mqtt.connectAsync(broker.url, { clientId: 'poison-consumer', protocolVersion: 5 })
  t.after(() => consumer.endAsync(true))
  await consumer.subscribeAsync('gateways/+/batches/+', { qos: 1 })
  let refusals = 0
  consumer.on('message', (_topic, payload) => {
    const b = decodeBatch(sniffEncoding(payload) === 'gzip' ? gunzipSync(payload) : payload, { maxItems: 10000 })
    const items = b.items as BatchItem[]
    const poisoned = items.some((i) => i[3] === 7)
    if (poisoned) refusals++
    const msg = poisoned
      ? encodeResultsMessage(1, b.batch, { status: 400, error: 'invalid_item', message: 'cannot read item 7' })
      : encodeResultsMessage(1, b.batch, { results: items.map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) })
    consumer.publish(`gateways/${b.gateway}/results`, msg, { qos: 1 })
  })
  const gw = await startGateway(t, { ...fast, lingerMs: 300, upstream: [broker.url], gatewayId: 'gw-mq7' })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed' })
  const c = await connectDevice(t, gw.mqttPort, 'mq-poison-1')
  for (let i = 1; i <= 16; i++) await publish(c, 'devices/mq-poison-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { timeoutMs: 15_000, what: 'drained' })
  assert.equal(gw.store.dlqCount, 1)
  const [dead] = await gw.store.deadLetters()
  assert.match(dead!.reason, /answered 400 for this item alone: invalid_item: cannot read item 7/)
  assert.ok(refusals >= 4, `bisected in ${refusals} refusals (16 -> 8 -> 4 -> 2 -> 1)`)
})

test('ingest consumer: a batch whose gateway id is not the topic\'s is refused 403 in the results, nothing stored', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const ingest = await startIngest(t, broker.url)
  const spy = await mqtt.connectAsync(broker.url, { clientId: 'spy', protocolVersion: 5 })
  t.after(() => spy.endAsync(true))
  await spy.subscribeAsync('gateways/gw-honest/results', { qos: 1 })
  const answers: Buffer[] = []
  spy.on('message', (_topic, payload) => answers.push(payload))
  // gw-honest's topic, gw-forged's body
  const body = encodeBatch({ gateway: 'gw-forged', epoch: 'e1', batch: 'b-forged', floors: [], items: [[0, 1, 'dev-x', 1, 1, 1, 1, { t: 1 }]] })
  await spy.publishAsync('gateways/gw-honest/batches/0', body, { qos: 1 })
  const got = await waitFor(() => answers[0], { what: 'results published' })
  const h = decodeResultsHeader(got)
  assert.equal(h.batch, 'b-forged')
  assert.equal(h.status, 403)
  assert.match(h.message, /topic belongs to gateway gw-honest/)
  // a gateway id no gateway may have (the HTTP side takes ids from its tokens config; here the topic says)
  await spy.subscribeAsync('gateways/gw:odd/results', { qos: 1 })
  const odd = encodeBatch({ gateway: 'gw:odd', epoch: 'e1', batch: 'b-odd', floors: [], items: [[0, 1, 'dev-x', 1, 1, 1, 1, { t: 1 }]] })
  await spy.publishAsync('gateways/gw:odd/batches/0', odd, { qos: 1 })
  const h2 = decodeResultsHeader(await waitFor(() => answers[1], { what: 'results for the odd id' }))
  assert.equal(h2.status, 403)
  assert.match(h2.message, /gateway id "gw:odd" must match/)
  assert.equal((await ingest.sink.stats()).stored, 0)
  assert.equal(await metricValue(ingest.metrics.registry, 'ingest_rejected_batches_total', { reason: 'forbidden' }), 2)
})

test('results mode with --ack-mode delivered: the device gets its PUBACK only after the ingest committed the reading', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-mq8', ackMode: 'delivered' })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed' })
  const c = await connectDevice(t, gw.mqttPort, 'mq-dlv-1')
  let acked = false
  const p = publish(c, 'devices/mq-dlv-1/readings', reading(1)).then(() => { acked = true })
  // no consumer yet: the batch cannot be answered, so the device waits
  await waitFor(() => gw.flusher.status().lastError !== null, { what: 'the batch went unanswered' })
  assert.equal(acked, false, 'no PUBACK while nothing is stored')
  const ingest = await startIngest(t, broker.url)
  await p
  assert.deepEqual(await storedSeqs(ingest, 'mq-dlv-1'), [1], 'stored before the device got its PUBACK')
})

test('results mode over MQTT 3.1.1 with protocol v2 batches: the ingest consumer answers in v2, everything stored once', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const ingest = await startIngest(t, broker.url)
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-mq9', upstreamMqttVersion: '3.1.1', upstreamProtocol: 'v2' })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed' })
  const c = await connectDevice(t, gw.mqttPort, 'mq-v2-1')
  for (let i = 1; i <= 25; i++) await publish(c, 'devices/mq-v2-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { what: 'answered' })
  assert.deepEqual(await storedSeqs(ingest, 'mq-v2-1'), Array.from({ length: 25 }, (_, i) => i + 1))
  assert.ok(await metricValue(ingest.metrics.registry, 'ingest_received_bytes_total', { encoding: 'gzip', version: '2' }) > 0, 'v2, gzipped, reached the consumer')
  assert.equal(await metricValue(ingest.metrics.registry, 'ingest_received_bytes_total', { version: '1' }), 0)
})

test('results mode: a whole-batch 503 with retryAfterMs in the results is honoured', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const consumer = await mqtt.connectAsync(broker.url, { clientId: 'busy-consumer', protocolVersion: 5 })
  t.after(() => consumer.endAsync(true))
  await consumer.subscribeAsync('gateways/+/batches/+', { qos: 1 })
  const at: number[] = []
  consumer.on('message', (_topic, payload) => {
    at.push(Date.now())
    const b = decodeBatch(sniffEncoding(payload) === 'gzip' ? gunzipSync(payload) : payload, { maxItems: 10000 })
    const msg = at.length === 1
      ? encodeResultsMessage(1, b.batch, { status: 503, error: 'busy', message: 'try later', retryAfterMs: 1000 })
      : encodeResultsMessage(1, b.batch, { results: (b.items as BatchItem[]).map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) })
    consumer.publish(`gateways/${b.gateway}/results`, msg, { qos: 1 })
  })
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-mq10' })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed' })
  const c = await connectDevice(t, gw.mqttPort, 'mq-busy-1')
  await publish(c, 'devices/mq-busy-1/readings', reading(1))
  await waitFor(() => gw.store.items === 0, { what: 'answered' })
  assert.equal(at.length, 2)
  assert.ok(at[1]! - at[0]! >= 950, `second attempt after ${at[1]! - at[0]!} ms, retryAfterMs said 1000`)
})

test('several broker URLs: a dead first one is skipped for the next', async (t) => {
  needTools('mosquitto')
  const dead = await startMosquitto(t)
  const deadUrl = dead.url
  await dead.kill()
  const live = await startMosquitto(t)
  const sub = await mqtt.connectAsync(live.url, { clientId: 'failover-sub', protocolVersion: 5 })
  t.after(() => sub.endAsync(true))
  await sub.subscribeAsync('gateways/gw-mq11/batches/+', { qos: 1 })
  let items = 0
  sub.on('message', (_topic, payload) => { items += decodeBatch(payload, { maxItems: 10000 }).items.length })
  const gw = await startGateway(t, { ...fast, upstream: [deadUrl, live.url], gatewayId: 'gw-mq11', upstreamAck: 'broker' })
  const c = await connectDevice(t, gw.mqttPort, 'mq-fo-1')
  for (let i = 1; i <= 5; i++) await publish(c, 'devices/mq-fo-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { timeoutMs: 15_000, what: 'delivered through the second broker' })
  await waitFor(() => items === 5, { what: 'the subscriber on the second broker got them' })
  assert.equal(gw.flusher.status().url, live.url)
})

test('a broker that refuses our password: upstream auth-failed, flushing paused, nothing deleted', async (t) => {
  needTools('mosquitto')
  const dir = await tempDir(t, 'mosq-pw-')
  const pw = join(dir, 'passwd')
  execFileSync('/usr/bin/mosquitto_passwd', ['-c', '-b', pw, 'gw-mq12', 'right-secret'])
  const broker = await startMosquitto(t, { dir, extra: [`password_file ${pw}`] })
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-mq12', token: 'wrong-secret', authRetryMs: 60_000 })
  const c = await connectDevice(t, gw.mqttPort, 'mq-pw-1')
  await publish(c, 'devices/mq-pw-1/readings', reading(1))
  await waitFor(() => gw.flusher.status().state === 'auth-failed', { what: 'auth-failed' })
  assert.match(gw.flusher.status().lastError ?? '', /refused our credentials: Connection refused: Not authorized/)
  assert.equal(gw.flusher.ready, false, '/readyz unready')
  assert.equal(gw.store.items, 1)
  assert.equal(gw.store.dlqCount, 0)
})
