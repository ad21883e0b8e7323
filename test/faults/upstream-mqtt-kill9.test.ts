/**
 * kill -9 while the gateway uploads through Mosquitto in results mode (issue 20): of the
 * gateway CLI, and of the ingest CLI and of Mosquitto (persistence on). Every reading the
 * gateway acknowledged to its device is stored by the ingest exactly once, whatever was in
 * flight (published, committed, results on their way) at the kill.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { createIngest } from '../../ingest/index.ts'
import { decodeBatch, type BatchItem } from '../../protocol/index.ts'
import { connectDevice, publish, reading, silentLogger, startGateway } from '../helpers/gateway.ts'
import { spawnCli, tempDir, waitFor } from '../helpers/index.ts'
import { metricValue } from '../helpers/mqtt-from.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

type Status = { buffered: { items: number }, upstream: { mqtt?: { inFlight: number, lateResults: number } } }

async function status (adminPort: unknown): Promise<Status> {
  return await (await fetch(`http://127.0.0.1:${String(adminPort)}/status`)).json() as Status
}

test('results mode: kill -9 of the gateway mid-upload, 4 rounds: every acknowledged reading stored exactly once', { timeout: 120_000 }, async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const ingest = await createIngest({ port: 0, dataDir: await tempDir(t, 'ingest-k9-'), mqttBroker: broker.url, mqttClientId: 'ingest-k9' }, { logger: silentLogger })
  t.after(() => ingest.close())
  await waitFor(() => ingest.mqtt?.ready, { what: 'ingest subscribed' })
  const dir = await tempDir(t, 'gw-k9-')
  const args = ['--gateway-id', 'gw-k9', '--data-dir', dir, '--mqtt-port', '0', '--admin-port', '0', '--host', '127.0.0.1',
    '--upstream', broker.url, '--linger-ms', '100', '--batch-max-items', '50', '--results-timeout-ms', '1000', '--retry-base-ms', '50', '--retry-max-ms', '500']
  const devices = ['k9m-a', 'k9m-b', 'k9m-c']
  let next = 1
  let killedWithBacklog = 0
  for (let round = 0; round < 4; round++) {
    const gw = await spawnCli(t, 'gateway/main.ts', args)
    const clients = await Promise.all(devices.map((d) => connectDevice(t, gw.ready.mqttPort as number, d)))
    const from = next
    next += 150
    await Promise.all(clients.map(async (c, i) => {
      for (let s = from; s < next; s++) await publish(c, `devices/${devices[i]}/readings`, reading(s))
    }))
    // some of this round's readings are upstream, some still buffered
    await waitFor(async () => (await ingest.sink.stats()).stored >= (from - 1) * devices.length + 50, { timeoutMs: 15_000, what: 'upload under way' })
    const st = await status(gw.ready.adminPort)
    if (st.buffered.items > 0) killedWithBacklog++
    await gw.kill('SIGKILL')
    for (const c of clients) c.end(true)
  }
  // the last process drains what is left
  const gw = await spawnCli(t, 'gateway/main.ts', args)
  await waitFor(async () => (await status(gw.ready.adminPort)).buffered.items === 0, { timeoutMs: 30_000, what: 'drained' })
  assert.ok(killedWithBacklog >= 2, `${killedWithBacklog} of 4 kills landed with items still buffered (not luck)`)
  for (const d of devices) {
    const res = await fetch(`http://127.0.0.1:${ingest.port}/v1/devices/${d}/readings?limit=1000`)
    const seqs = (await res.json() as { readings: { seq: number }[] }).readings.map((r) => r.seq)
    assert.deepEqual(seqs, Array.from({ length: next - 1 }, (_, i) => i + 1), `${d}: every reading once, in order`)
  }
  const dups = await metricValue(ingest.metrics.registry, 'ingest_items_total', { code: 'duplicate' })
  t.diagnostic(`duplicates answered after the kills: ${dups}`)
  await gw.kill('SIGTERM')
})

test('results mode: kill -9 of the ingest and of Mosquitto (persistence on) under load, 4 rounds: every acknowledged reading stored exactly once', { timeout: 120_000 }, async (t) => {
  needTools('mosquitto')
  const brokerDir = await tempDir(t, 'mosq-k9-')
  let broker = await startMosquitto(t, { persistence: true, dir: brokerDir })
  const port = broker.port
  const ingestDir = await tempDir(t, 'ingest-k9b-')
  const ingestArgs = ['--port', '0', '--data-dir', ingestDir, '--mqtt-broker', broker.url, '--mqtt-client-id', 'ingest-k9b', '--mqtt-connections', '2']
  let ingest = await spawnCli(t, 'ingest/main.ts', ingestArgs)
  assert.equal(ingest.ready.mqttBroker, broker.url, 'the ready line names the broker')
  const gw = await startGateway(t, { gatewayId: 'gw-k9b', upstream: [broker.url], lingerMs: 50, batchMaxItems: 40, resultsTimeoutMs: 1000, retryBaseMs: 50, retryMaxMs: 500 })
  const devices = ['k9b-a', 'k9b-b']
  const acked = devices.map(() => 0)
  let stop = false
  const load = Promise.all(devices.map(async (d, i) => {
    const c = await connectDevice(t, gw.mqttPort, d)
    while (!stop) {
      await publish(c, `devices/${d}/readings`, reading(acked[i]! + 1))
      acked[i]!++
      if (acked[i]! % 20 === 0) await new Promise((r) => setTimeout(r, 10)) // about 1,000 readings/s in all
    }
  }))
  let landed = 0
  for (let round = 0; round < 4; round++) {
    const target = acked.reduce((a, b) => a + b, 0) + 200
    await waitFor(() => acked.reduce((a, b) => a + b, 0) >= target, { timeoutMs: 15_000, what: 'load flowing' })
    if ((gw.flusher.status().mqtt?.inFlight ?? 0) > 0 || gw.store.items > 0) landed++
    if (round % 2 === 0) {
      await ingest.kill('SIGKILL')
      ingest = await spawnCli(t, 'ingest/main.ts', ingestArgs)
    } else {
      await broker.kill('SIGKILL')
      broker = await startMosquitto(t, { persistence: true, dir: brokerDir, port })
    }
  }
  stop = true
  await load
  await waitFor(() => gw.store.items === 0, { timeoutMs: 30_000, what: 'gateway drained' })
  assert.ok(landed >= 3, `${landed} of 4 kills landed with batches in flight or items buffered (not luck)`)
  for (const [i, d] of devices.entries()) {
    const res = await fetch(`http://127.0.0.1:${String(ingest.ready.port)}/v1/devices/${d}/readings?limit=100000`)
    const seqs = (await res.json() as { readings: { seq: number }[] }).readings.map((r) => r.seq)
    assert.equal(new Set(seqs).size, seqs.length, `${d}: nothing stored twice`)
    assert.deepEqual(seqs, Array.from({ length: acked[i]! }, (_, k) => k + 1), `${d}: every acknowledged reading, in order`)
  }
})

test('broker mode: kill -9 of the gateway mid-upload, 3 rounds: every acknowledged reading reaches a plain subscriber at least once, exactly once after its dedup by (gateway, epoch, p, s)', { timeout: 120_000 }, async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const sub = await mqtt.connectAsync(broker.url, { clientId: 'k9-plain-sub', protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 600 } })
  t.after(() => sub.endAsync(true))
  await sub.subscribeAsync('gateways/gw-k9c/batches/+', { qos: 1 })
  const byKey = new Map<string, string>()
  let received = 0
  sub.on('message', (_topic, payload) => {
    const b = decodeBatch(payload, { maxItems: 10000 })
    for (const it of b.items as BatchItem[]) {
      received++
      const key = `${b.gateway}/${b.epoch}/${it[0]}/${it[1]}`
      const who = `${it[2]}:${it[3]}`
      assert.ok(!byKey.has(key) || byKey.get(key) === who, `${key} named two readings`)
      byKey.set(key, who)
    }
  })
  const dir = await tempDir(t, 'gw-k9c-')
  const args = ['--gateway-id', 'gw-k9c', '--data-dir', dir, '--mqtt-port', '0', '--admin-port', '0', '--host', '127.0.0.1',
    '--upstream', broker.url, '--upstream-ack', 'broker', '--linger-ms', '20', '--batch-max-items', '20']
  let next = 1
  let landed = 0
  for (let round = 0; round < 3; round++) {
    const gw = await spawnCli(t, 'gateway/main.ts', args)
    const c = await connectDevice(t, gw.ready.mqttPort as number, 'k9c-dev')
    const from = next
    next += 300
    for (let s = from; s < next; s++) await publish(c, 'devices/k9c-dev/readings', reading(s))
    if ((await status(gw.ready.adminPort)).buffered.items > 0) landed++
    await gw.kill('SIGKILL')
    c.end(true)
  }
  const gw = await spawnCli(t, 'gateway/main.ts', args)
  await waitFor(async () => (await status(gw.ready.adminPort)).buffered.items === 0, { timeoutMs: 30_000, what: 'drained' })
  await waitFor(() => byKey.size >= next - 1, { timeoutMs: 10_000, what: 'subscriber got everything' })
  assert.ok(landed >= 2, `${landed} of 3 kills landed with items buffered (not luck)`)
  const seqs = [...byKey.values()].map((w) => Number(w.split(':')[1])).sort((a, b) => a - b)
  assert.deepEqual(seqs, Array.from({ length: next - 1 }, (_, i) => i + 1), 'every reading once after dedup')
  t.diagnostic(`${received} items received for ${byKey.size} readings`)
  await gw.kill('SIGTERM')
})
