/**
 * Broker ack mode must not delete a batch the broker delivered to nobody. An MQTT 5 PUBACK
 * with reason 0x10 ("no matching subscribers") was counted as stored and the batch deleted:
 * with the consumer's session gone (a broker restarted without it; Mosquitto 2.0 keeps a
 * session only when its first CONNECT had clean start 0) every reading acknowledged to the
 * devices was lost, with nothing dead-lettered and nothing received anywhere. Real
 * Mosquitto 2.0 as the cloud broker: first no consumer (nothing deleted, /status and a
 * metric say why), then a consumer connecting as docs/upstream-mqtt.md says (everything
 * arrives exactly once). The opt-in flag restores the old behaviour, and says so.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { decodeBatch, type BatchItem } from '../../protocol/index.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { metricValue } from '../helpers/mqtt-from.ts'
import { waitFor } from '../helpers/index.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

const fast = { lingerMs: 50, retryBaseMs: 20, retryMaxMs: 200 }

test('broker mode, no consumer subscribed: "no matching subscribers" keeps every batch; a consumer that subscribes then gets each reading exactly once', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-ns1', upstreamAck: 'broker' })
  await waitFor(() => gw.flusher.status().mqtt?.connected, { what: 'gateway connected' })
  const dev = await connectDevice(t, gw.mqttPort, 'ns-dev-1')
  for (let i = 1; i <= 10; i++) await publish(dev, 'devices/ns-dev-1/readings', reading(i))

  // the broker answered 0x10 more than once: the batch was kept and sent again
  await waitFor(async () => await metricValue(gw.metrics.registry, 'gateway_upstream_mqtt_no_subscribers_total') >= 3, { what: 'batches answered "no matching subscribers", resent' })
  assert.equal(gw.store.items, 10, 'nothing deleted on a PUBACK that reached nobody')
  assert.equal(gw.store.dlqCount, 0, 'nothing dead-lettered either')
  const st = gw.flusher.status()
  assert.equal(st.mqtt?.noSubscribers, true)
  assert.match(st.lastError ?? '', /no consumer is subscribed to gateways\/gw-ns1\/batches\/\d+/)
  const http = await (await fetch(`http://127.0.0.1:${gw.adminPort}/status`)).json() as { upstream: { mqtt?: { noSubscribers: boolean, noSubscriberBatches: number } } }
  assert.equal(http.upstream.mqtt?.noSubscribers, true, '/status says no consumer is subscribed')
  assert.ok((http.upstream.mqtt?.noSubscriberBatches ?? 0) >= 3)

  // a consumer as docs/upstream-mqtt.md says: persistent session from its first CONNECT
  // (clean start 0), subscribes on every connect, dedups by (gateway, epoch, partition, seq)
  const consumer = await mqtt.connectAsync(broker.url, { clientId: 'ns-consumer', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 3600 } })
  t.after(() => consumer.endAsync(true))
  const got: { epoch: string, items: BatchItem[] }[] = []
  consumer.on('message', (_topic, payload) => {
    const b = decodeBatch(payload, { maxItems: 10000 })
    got.push({ epoch: b.epoch, items: b.items as BatchItem[] })
  })
  await consumer.subscribeAsync('gateways/gw-ns1/batches/+', { qos: 1 })
  await waitFor(() => gw.store.items === 0, { timeoutMs: 15_000, what: 'deleted once a consumer is subscribed' })
  await waitFor(() => got.reduce((n, g) => n + g.items.length, 0) >= 10, { what: 'the consumer got every reading' })
  const all = got.flatMap((g) => g.items.map((i) => ({ key: `${g.epoch}/${i[0]}/${i[1]}`, seq: i[3] })))
  assert.equal(all.length, 10, 'each reading arrived once (the batches answered 0x10 reached nobody)')
  assert.equal(new Set(all.map((a) => a.key)).size, 10)
  assert.deepEqual(all.map((a) => a.seq).sort((a, b) => Number(a) - Number(b)), Array.from({ length: 10 }, (_, i) => i + 1))
  assert.equal(gw.flusher.status().mqtt?.noSubscribers, false, 'no longer says no consumer')
  assert.equal(gw.flusher.status().state, 'ok')
})

test('broker mode with --upstream-accept-no-subscribers: a batch answered "no matching subscribers" is deleted, and counted', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const gw = await startGateway(t, { ...fast, upstream: [broker.url], gatewayId: 'gw-ns2', upstreamAck: 'broker', upstreamAcceptNoSubscribers: true })
  await waitFor(() => gw.flusher.status().mqtt?.connected, { what: 'gateway connected' })
  const dev = await connectDevice(t, gw.mqttPort, 'ns-dev-2')
  for (let i = 1; i <= 3; i++) await publish(dev, 'devices/ns-dev-2/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { what: 'deleted, as the operator opted in to' })
  assert.ok(await metricValue(gw.metrics.registry, 'gateway_upstream_mqtt_no_subscribers_total') >= 1, 'still counted')
  assert.equal(gw.flusher.status().mqtt?.noSubscribers, true, 'and /status still says nobody is subscribed')
})
