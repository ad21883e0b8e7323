/**
 * One gateway must not be able to pre-empt another gateway's readings.
 *
 * The natural key (fleet, device, boot, seq) dedups a device's reading that reaches the
 * ingest through two gateways of its fleet. Before the conflict rule, any copy with that key
 * was answered `duplicate`, whatever it carried: a second gateway of the fleet that sent
 * sensor-1's seqs first with forged values had the real gateway's readings answered
 * `duplicate`, so the real gateway deleted them and the ingest held only the forged values.
 * Now a copy with other content (ts or values) is kept as a recorded conflict, counted,
 * listed by `GET /v1/conflicts` and on the page. Over MQTT every gateway the tokens config did
 * not list used to land in fleet `default`, so any gateway the broker admitted could do the
 * same to the listed ones: such gateways are now refused unless the operator opts in.
 * The page test needs /usr/bin/chromium (fails, never skips, without it).
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { launchBrowser, openPage } from '../../scripts/browser.ts'
import { createIngest, type Ingest, type IngestOptions } from '../../ingest/index.ts'
import { AckCode, decodeResponse, decodeResultsHeader, encodeBatch, type BatchItem } from '../../protocol/index.ts'
import type { ConflictPage } from '../../ingest/sinks/types.ts'
import { silentLogger } from '../helpers/gateway.ts'
import { bearer, call, jsonOf } from '../helpers/http.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { metricValue } from '../helpers/mqtt-from.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

const REAL = 'real-gw-secret-0123'
const EVIL = 'evil-gw-secret-0123'
const READ = 'read-all-secret-0123'
const TS = 1_790_000_000_000

const sensor = (p: number, s: number, seq: number, t: number): BatchItem => [p, s, 'sensor-1', seq, 1, TS + seq * 1000, TS + seq * 1000 + 7 + s, { t }]

async function startIngest (t: { after: (fn: () => unknown) => void }, opts: IngestOptions): Promise<Ingest> {
  const ingest = await createIngest({ port: 0, dataDir: await tempDir(t, 'ingest-conflicts-'), ...opts }, { logger: silentLogger })
  t.after(() => ingest.close())
  return ingest
}

async function post (ingest: Ingest, secret: string, gateway: string, items: BatchItem[]): Promise<number[]> {
  const body = encodeBatch({ gateway, epoch: `${gateway}-e1`, batch: `${gateway}-b${items[0]![1]}`, floors: [], items })
  const a = await call(`http://127.0.0.1:${ingest.port}/v1/batches`, { body, headers: { ...bearer(secret), 'content-type': 'application/cbor' } })
  assert.equal(a.status, 200, a.body.toString())
  return decodeResponse(a.body).results.map((r) => r[2])
}

test('http: a second gateway of the fleet that sends a device\'s seqs first with forged values does not get the real readings deleted unrecorded', async (t) => {
  const tokensFile = join(await tempDir(t, 'tokens-'), 'tokens.json')
  await writeFile(tokensFile, JSON.stringify({ 'gw-real': { secret: REAL, fleet: 'plant' }, 'gw-evil': { secret: EVIL, fleet: 'plant' } }))
  const ingest = await startIngest(t, { tokensFile, readToken: [`*:${READ}`] })
  const base = `http://127.0.0.1:${ingest.port}`

  const seqs = Array.from({ length: 10 }, (_, i) => i + 1)
  assert.deepEqual(await post(ingest, EVIL, 'gw-evil', seqs.map((q) => sensor(0, q, q, 666))), seqs.map(() => AckCode.Stored))
  // The real gateway's readings: answered stored (kept as conflicts), so it deletes them.
  assert.deepEqual(await post(ingest, REAL, 'gw-real', seqs.map((q) => sensor(3, 100 + q, q, 21.5))), seqs.map(() => AckCode.Stored))

  assert.equal((await call(`${base}/v1/conflicts?device=sensor-1`)).status, 401, 'conflicts are read side')
  const page = jsonOf<ConflictPage>(await call(`${base}/v1/conflicts?device=sensor-1&limit=1000`, { headers: bearer(READ) }))
  assert.equal(page.conflicts.length, 10, 'every real reading survives, in the conflicts record')
  assert.deepEqual(page.conflicts.map((c) => [c.fleet, c.seq, c.stored?.gateway, c.stored?.values, c.conflicting.gateway, c.conflicting.epoch, c.conflicting.p, c.conflicting.s, c.conflicting.values]),
    seqs.map((q) => ['plant', q, 'gw-evil', { t: 666 }, 'gw-real', 'gw-real-e1', 3, 100 + q, { t: 21.5 }]))
  assert.equal(page.next, null)
  const paged = jsonOf<ConflictPage>(await call(`${base}/v1/conflicts?limit=3`, { headers: bearer(READ) }))
  assert.equal(paged.conflicts.length, 3)
  const rest = jsonOf<ConflictPage>(await call(`${base}/v1/conflicts?limit=1000&cursor=${paged.next!}`, { headers: bearer(READ) }))
  assert.deepEqual([...paged.conflicts, ...rest.conflicts].map((c) => c.seq), seqs, 'the cursor goes on where the page stopped')
  assert.equal((await call(`${base}/v1/conflicts?device=no%20such`, { headers: bearer(READ) })).status, 400)

  assert.equal(await metricValue(ingest.metrics.registry, 'ingest_natural_key_conflicts_total'), 10)
  const stats = jsonOf<{ conflicts: number, gateways: Record<string, { stored: number, duplicates: number, conflicts: number }> }>(await call(`${base}/v1/stats`, { headers: bearer(READ) }))
  assert.equal(stats.conflicts, 10)
  assert.deepEqual(stats.gateways['gw-real'], { stored: 0, duplicates: 0, rejected: 0, evicted: 0, conflicts: 10 })
  const live = jsonOf<{ stats: { conflicts: number }, conflicts: unknown[] }>(await call(`${base}/ui/live`, { headers: bearer(READ) }))
  assert.equal(live.stats.conflicts, 10)
  assert.equal(live.conflicts.length, 10, 'the page lists them')

  // The page shows them (after it asked for the read token).
  const ctx = await launchBrowser(t)
  const ui = await openPage(ctx, `${base}/`)
  await ui.page.waitForSelector('#token-form:not([hidden])', { timeout: 15_000 })
  await ui.page.fill('#read-token', READ)
  await ui.page.click('#token-form button')
  await ui.page.waitForSelector('#conflicts tr[data-device="sensor-1"]', { timeout: 15_000 })
  assert.equal(await ui.page.$$eval('#conflicts tbody tr', (rows) => rows.length), 10)
  assert.match(await ui.page.$eval('#conflicts tbody tr', (r) => r.textContent ?? ''), /gw-evil p0 s1: t=666.*gw-real p3 s101: t=21\.5/)
  assert.equal(await ui.page.$eval('#v-conflicts', (e) => e.getAttribute('data-value')), '10')
  assert.deepEqual(ui.errors.filter((e) => !/status of 401/.test(e)), [], 'no console errors on the ingest page but the first poll\'s 401 (it asks for the token)')

  // A true copy (the same ts and values, another receive time) is still a duplicate.
  const copy = sensor(3, 200, 4, 666)
  copy[6] += 12345
  assert.deepEqual(await post(ingest, REAL, 'gw-real', [copy]), [AckCode.Duplicate])
  assert.equal(await metricValue(ingest.metrics.registry, 'ingest_natural_key_conflicts_total'), 10)
})

type Answer = { status: number, message: string, codes: number[] }

/** Publishes one batch as `gateway` on its own topic and waits for its results message. */
async function viaBroker (url: string, gateway: string, items: BatchItem[]): Promise<Answer> {
  const c = await mqtt.connectAsync(url, { clientId: `pub-${gateway}-${Math.random().toString(36).slice(2)}`, protocolVersion: 5 })
  try {
    const answers: Buffer[] = []
    c.on('message', (_topic, payload) => answers.push(payload))
    await c.subscribeAsync(`gateways/${gateway}/results`, { qos: 1 })
    await c.publishAsync(`gateways/${gateway}/batches/0`, encodeBatch({ gateway, epoch: 'e1', batch: `${gateway}-b1`, floors: [], items }), { qos: 1 })
    const got = await waitFor(() => answers[0], { timeoutMs: 15_000, what: `results for ${gateway}` })
    const h = decodeResultsHeader(got)
    return { status: h.status, message: h.message, codes: h.status === 200 ? decodeResponse(got).results.map((r) => r[2]) : [] }
  } finally {
    await c.endAsync(true)
  }
}

test('mqtt: a gateway the tokens config does not list is refused 403 by default; a listed one writes into its fleet; the operator may opt in', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const tokensFile = join(await tempDir(t, 'tokens-'), 'tokens.json')
  await writeFile(tokensFile, JSON.stringify({ 'gw-listed': { fleet: 'plant' } })) // no secret: it writes over MQTT only
  const ingest = await startIngest(t, { mqttBroker: broker.url, mqttClientId: `ingest-adm-${process.pid}`, mqttConnections: 1, tokensFile })
  await waitFor(() => ingest.mqtt?.ready, { what: 'ingest subscribed' })

  const forged = await viaBroker(broker.url, 'gw-unlisted', [1, 2, 3].map((q) => sensor(0, q, q, 666)))
  assert.equal(forged.status, 403)
  assert.match(forged.message, /gateway gw-unlisted is not listed in the ingest's tokens config.*--mqtt-allow-unlisted-gateways/)
  assert.equal((await ingest.sink.stats()).stored, 0, 'nothing of it stored')
  assert.equal(await metricValue(ingest.metrics.registry, 'ingest_rejected_batches_total', { reason: 'forbidden' }), 1)

  const real = await viaBroker(broker.url, 'gw-listed', [1, 2, 3].map((q) => sensor(0, q, q, 21.5)))
  assert.deepEqual(real, { status: 200, message: '', codes: [AckCode.Stored, AckCode.Stored, AckCode.Stored] })
  const page = await ingest.sink.queryDevice({ device: 'sensor-1', limit: 10 })
  assert.deepEqual(page.readings.map((r) => [r.gateway, r.values]), [1, 2, 3].map(() => ['gw-listed', { t: 21.5 }]), 'the real readings are the stored ones')

  // The operator opts in (another ingest; the first one stops answering first, so the
  // results come from this one alone).
  await ingest.close()
  const open = await startIngest(t, { mqttBroker: broker.url, mqttClientId: `ingest-open-${process.pid}`, mqttShareGroup: 'open', mqttConnections: 1, mqttAllowUnlistedGateways: true })
  await waitFor(() => open.mqtt?.ready, { what: 'second ingest subscribed' })
  const opted = await viaBroker(broker.url, 'gw-unlisted2', [sensor(0, 9, 9, 1)])
  assert.deepEqual(opted, { status: 200, message: '', codes: [AckCode.Stored] }, 'with --mqtt-allow-unlisted-gateways an unlisted gateway writes (into fleet default)')
})
