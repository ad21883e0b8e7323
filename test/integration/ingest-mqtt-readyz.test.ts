/**
 * Issue 20, item 5: the ingest's /readyz names its MQTT broker connection. With
 * `--mqtt-broker`, an ingest whose broker is down or not yet subscribed takes no batches, so
 * it answers 503 saying which broker and how many connections are up; 200 once every
 * connection is subscribed; 503 again when the broker dies. Without the flag nothing changes.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createIngest, type Ingest, type IngestOptions } from '../../ingest/index.ts'
import { freePort } from '../../bench/lib/procs.ts'
import { silentLogger } from '../helpers/gateway.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

type Ready = { code: number, body: { status: string, sink: string, reasons?: string[], mqtt?: { broker: string, connected: boolean, subscribed: boolean, connections: number, connectedConnections: number, subscribedConnections: number } } }

async function readyz (ingest: Ingest): Promise<Ready> {
  const r = await fetch(`http://127.0.0.1:${ingest.port}/readyz`)
  return { code: r.status, body: await r.json() as Ready['body'] }
}

async function startIngest (t: { after: (fn: () => unknown) => void }, opts: IngestOptions): Promise<Ingest> {
  const ingest = await createIngest({ port: 0, dataDir: await tempDir(t, 'ingest-readyz-'), ...opts }, { logger: silentLogger })
  t.after(() => ingest.close())
  return ingest
}

test('ingest /readyz: unready until every broker connection is subscribed, ready then, unready when the broker dies', async (t) => {
  needTools('mosquitto')
  const port = await freePort()
  const url = `mqtt://127.0.0.1:${port}`
  const ingest = await startIngest(t, { mqttBroker: url, mqttConnections: 2, mqttClientId: `ingest-rz-${process.pid}` })

  // no broker yet
  const down = await readyz(ingest)
  assert.equal(down.code, 503)
  assert.equal(down.body.status, 'unready')
  assert.equal(down.body.mqtt?.broker, url)
  assert.equal(down.body.mqtt?.connected, false)
  assert.equal(down.body.mqtt?.connections, 2)
  assert.match(down.body.reasons?.join('; ') ?? '', new RegExp(`broker ${url}: 0 of 2 connections up`))

  const broker = await startMosquitto(t, { port })
  const up = await waitFor(async () => { const r = await readyz(ingest); return r.code === 200 ? r : undefined }, { timeoutMs: 15_000, what: 'ingest ready once the broker is up' })
  assert.deepEqual(up.body.mqtt && { broker: up.body.mqtt.broker, connected: up.body.mqtt.connected, subscribed: up.body.mqtt.subscribed, subscribedConnections: up.body.mqtt.subscribedConnections }, { broker: url, connected: true, subscribed: true, subscribedConnections: 2 })
  assert.equal(up.body.status, 'ready')
  assert.equal(up.body.reasons, undefined)
  assert.equal(ingest.mqtt?.ready, true, 'readyz agrees with the consumer')

  await broker.kill()
  const gone = await waitFor(async () => { const r = await readyz(ingest); return r.code === 503 ? r : undefined }, { timeoutMs: 15_000, what: 'ingest unready once the broker is gone' })
  assert.equal(gone.body.mqtt?.connected, false)
  assert.match(gone.body.reasons?.join('; ') ?? '', /broker mqtt:\/\/127\.0\.0\.1:\d+: [01] of 2 connections up/)
})

test('ingest /readyz without --mqtt-broker names no broker', async (t) => {
  const ingest = await startIngest(t, { token: ['gw1:0123456789abcdef0123'] })
  const r = await readyz(ingest)
  assert.equal(r.code, 200)
  assert.deepEqual(r.body, { status: 'ready', sink: 'leveldb' })
})
