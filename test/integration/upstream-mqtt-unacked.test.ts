/**
 * A broker that accepts the connection but never PUBACKs must not grow the gateway's memory
 * without bound. MQTT.js keeps every QoS 1 PUBLISH in its outgoing store until its PUBACK
 * (clean=false), and the gateway sent each partition's items again in a new batch after
 * every results timeout: another copy each time (RSS 172 -> 460 MB in 81 s while the
 * backlog stayed at 3.5 MB). The broker here is a few lines of `net` and mqtt-packet that
 * grant the connection and the results subscription and never answer a PUBLISH, so every
 * PUBLISH it received is still in the client's store: their number is the store's size.
 */
import assert from 'node:assert/strict'
import { createServer, type Socket } from 'node:net'
import { test } from 'node:test'
import mqttPacket from 'mqtt-packet'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { metricValue } from '../helpers/mqtt-from.ts'
import { waitFor } from '../helpers/index.ts'

type Received = { topic: string, messageId: number, bytes: number, dup: boolean }

/** An MQTT 5 broker on 127.0.0.1 that CONNACKs, SUBACKs and answers pings, and never PUBACKs. */
async function silentBroker (t: { after: (fn: () => unknown) => void }): Promise<{ url: string, publishes: Received[] }> {
  const publishes: Received[] = []
  const sockets = new Set<Socket>()
  const server = createServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    const parser = mqttPacket.parser({ protocolVersion: 5 })
    const send = (p: Record<string, unknown>): void => { socket.write(mqttPacket.generate(p as unknown as mqttPacket.Packet, { protocolVersion: 5 })) }
    parser.on('packet', (p) => {
      if (p.cmd === 'connect') send({ cmd: 'connack', reasonCode: 0, sessionPresent: false })
      else if (p.cmd === 'subscribe') send({ cmd: 'suback', messageId: p.messageId, granted: p.subscriptions.map(() => 1) })
      else if (p.cmd === 'pingreq') send({ cmd: 'pingresp' })
      // batches only: the gateway's command link publishes its reports on this broker too
      else if (p.cmd === 'publish' && p.topic.includes('/batches/')) publishes.push({ topic: p.topic, messageId: p.messageId ?? 0, bytes: Buffer.byteLength(p.payload), dup: p.dup })
    })
    parser.on('error', () => socket.destroy())
    socket.on('data', (b) => parser.parse(b))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  }))
  return { url: `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`, publishes }
}

test('a broker that never PUBACKs: the batches and bytes the MQTT client holds stay bounded across results timeouts, and no partition is sent twice', async (t) => {
  const broker = await silentBroker(t)
  const maxInFlight = 2
  const maxMessageBytes = 4096
  const gw = await startGateway(t, { lingerMs: 20, retryBaseMs: 20, retryMaxMs: 100, maxInFlight, upstream: [broker.url], gatewayId: 'gw-silent', resultsTimeoutMs: 200, upstreamMaxMessageBytes: maxMessageBytes })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed to its results' })
  // readings of 12 devices: several partitions (of 8) have a batch to send
  const devices = await Promise.all(Array.from({ length: 12 }, (_, d) => connectDevice(t, gw.mqttPort, `silent-${d}`)))
  for (let i = 1; i <= 3; i++) await Promise.all(devices.map((c, d) => publish(c, `devices/silent-${d}/readings`, reading(i))))

  // many results timeouts and refused sends later (each a failed batch attempt)...
  await waitFor(async () => await metricValue(gw.metrics.registry, 'gateway_upstream_batches_total', { outcome: 'network_error' }) >= 20, { timeoutMs: 20_000, what: 'results timeouts and refused sends' })
  const partitions = new Set(broker.publishes.map((p) => p.topic))
  assert.ok(partitions.size >= 2, `batches of ${partitions.size} partitions reached the broker (not luck: more than one partition had a batch)`)

  // ...the client holds every PUBLISH the broker received, and no more than the bound
  const held = broker.publishes.filter((p) => !p.dup)
  const bound = 2 * maxInFlight
  assert.ok(held.length <= bound, `${held.length} batches held without a PUBACK (at most ${bound})`)
  for (const topic of partitions) assert.equal(held.filter((p) => p.topic === topic).length, 1, `${topic}: sent once, never again while its PUBLISH waits for a PUBACK`)
  const st = gw.flusher.status().mqtt!
  assert.equal(st.unacked, held.length, 'the gauge counts what the client holds')
  assert.equal(st.unackedBytes, held.reduce((n, p) => n + p.bytes, 0))
  assert.ok(st.unackedBytes <= bound * maxMessageBytes)
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_upstream_mqtt_unacked_batches'), held.length)
  await waitFor(() => /has not acknowledged/.test(gw.flusher.status().lastError ?? ''), { what: '/status says why nothing more is sent' })

  // nothing is lost or deleted, and devices still get their PUBACKs
  assert.equal(gw.store.items, 36)
  await publish(devices[0]!, 'devices/silent-0/readings', reading(4))
  assert.equal(gw.store.items, 37)
})
