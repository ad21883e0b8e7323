/**
 * A huge results message must not freeze the gateway. The MQTT upstream decoded a whole
 * results message before looking at its batch id: one 20 MB message (five million entries)
 * stalled every device's PUBACK for up to 7 s and took RSS from 118 to 574 MB. Now the batch
 * id is read from the first bytes, a message longer than the pending batch it answers is
 * refused unread, and the broker is told (MQTT 5 maximum packet size) not to send more than
 * the answer to the largest batch. Real Mosquitto 2.0 as the broker, a hand-written consumer
 * publishing crafted results: each refusal is counted under its reason, the malformed tails
 * placed after the batch id are never reached (else they would count as unreadable), and the
 * devices keep getting their PUBACKs.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { gunzipSync } from 'node:zlib'
import mqtt from 'mqtt'
import { AckCode, decodeBatch, encodeResultsMessage, sniffEncoding, type BatchItem, type ItemResult } from '../../protocol/index.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { metricValue } from '../helpers/mqtt-from.ts'
import { waitFor } from '../helpers/index.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

/** A CBOR head (RFC 8949 section 3) of major type `major` with argument `n`. */
function head (major: number, n: number): number[] {
  if (n < 24) return [(major << 5) | n]
  if (n < 256) return [(major << 5) | 24, n]
  if (n < 65536) return [(major << 5) | 25, n >> 8, n & 255]
  return [(major << 5) | 26, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255]
}
const text = (s: string): number[] => [...head(3, Buffer.byteLength(s)), ...Buffer.from(s)]

/** `{v: 1, batch, results: [<declared entries>...` followed by bytes that are not CBOR at all. */
function malformedResults (batch: string, declared: number): Buffer {
  return Buffer.from([...head(5, 3), ...text('v'), 1, ...text('batch'), ...text(batch), ...text('results'), ...head(4, declared), 0xff, 0xff, 0xff, 0xff])
}

test('results messages for an unknown batch, or longer than the pending batch, are refused unread and counted; the broker drops larger ones; devices keep getting PUBACKs', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const consumer = await mqtt.connectAsync(broker.url, { clientId: 'bounds-consumer', protocolVersion: 5 })
  t.after(() => consumer.endAsync(true))
  await consumer.subscribeAsync('gateways/+/batches/+', { qos: 1 })
  const batches: { batch: string, items: BatchItem[] }[] = []
  consumer.on('message', (_topic, payload) => {
    const b = decodeBatch(sniffEncoding(payload) === 'gzip' ? gunzipSync(payload) : payload, { maxItems: 10000 })
    batches.push({ batch: b.batch, items: b.items as BatchItem[] })
  })
  // results never time out here: the pending batch waits for whatever the test publishes
  const gw = await startGateway(t, { lingerMs: 20, upstream: [broker.url], gatewayId: 'gw-rb1', resultsTimeoutMs: 600_000, upstreamMqttVersion: '5' })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed to its results' })
  const dev = await connectDevice(t, gw.mqttPort, 'rb-dev-1')
  await publish(dev, 'devices/rb-dev-1/readings', reading(1))
  const first = await waitFor(() => batches[0], { what: 'the consumer got the batch' })
  assert.equal(first.items.length, 1)
  const [p, s] = first.items[0]!
  const results = 'gateways/gw-rb1/results'
  const ignored = (reason: string): Promise<number> => metricValue(gw.metrics.registry, 'gateway_upstream_mqtt_ignored_results_total', { reason })

  // 1. a batch id the gateway is not waiting for, 30,000 entries declared, then garbage
  await consumer.publishAsync(results, malformedResults('no-such-batch', 30_000), { qos: 1 })
  // 2. the pending batch (1 item), 3 entries declared, then garbage
  await consumer.publishAsync(results, malformedResults(first.batch, 3), { qos: 1 })
  // 3. the pending batch, well-formed, answering its item and 20,000 items it never sent
  const padded: ItemResult[] = [[p, s, AckCode.Stored], ...Array.from({ length: 20_000 }, (_, i) => [p, 1_000_000 + i, AckCode.Stored] as ItemResult)]
  const big = encodeResultsMessage(1, first.batch, { results: padded })
  await consumer.publishAsync(results, big, { qos: 1 })
  // 4. far above the maximum packet size the gateway announced: the broker must drop it
  const huge = encodeResultsMessage(1, 'no-such-batch-either', { results: Array.from({ length: 200_000 }, (_, i) => [0, i, AckCode.Stored] as ItemResult) })
  assert.ok(huge.length > 1_000_000, `${huge.length} bytes`)
  await consumer.publishAsync(results, huge, { qos: 1 })
  // 5. a marker after it: garbage, counted unreadable once it arrives
  await consumer.publishAsync(results, Buffer.from('not cbor at all'), { qos: 1 })

  await waitFor(async () => await ignored('unreadable') >= 1, { what: 'the marker arrived (so did everything before it)' })
  assert.equal(await ignored('unreadable'), 1, 'only the marker was unreadable: the malformed tails were never decoded')
  assert.equal(await ignored('late'), 1, 'the unknown batch id was looked up first and ignored as late; the 1 MB one never came')
  assert.equal(await ignored('too_many'), 1, '3 results declared for a batch of 1 item: refused from the head of its array')
  assert.equal(await ignored('oversized'), 1, `${big.length} bytes for a batch of 1 item: refused by size`)
  assert.equal(gw.store.items, 1, 'the refused answers deleted nothing')
  assert.equal(gw.store.dlqCount, 0)
  assert.equal(gw.flusher.status().mqtt?.refusedResults, 2)
  assert.equal(gw.flusher.status().mqtt?.connected, true, 'the connection stayed up (the broker did not send the 1 MB packet)')

  // the devices still get their PUBACKs, and a real answer still settles the batch
  await publish(dev, 'devices/rb-dev-1/readings', reading(2))
  await consumer.publishAsync(results, encodeResultsMessage(1, first.batch, { results: [[p, s, AckCode.Stored]] }), { qos: 1 })
  const second = await waitFor(() => batches[1], { what: 'the second batch went once the first was answered' })
  await consumer.publishAsync(results, encodeResultsMessage(1, second.batch, { results: second.items.map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) }), { qos: 1 })
  await waitFor(() => gw.store.items === 0, { what: 'both readings answered and deleted' })
})
