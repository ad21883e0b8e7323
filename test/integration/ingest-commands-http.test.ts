/**
 * Commands to devices through a real ingest over HTTP (docs/commands.md): the caller's JSON
 * API with command tokens, and a fake gateway that long-polls `GET /v1/gateway/commands`
 * and posts reports with the protocol's codecs.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { decodeCommandsMessage, decodeReportsResponse, encodeReportsRequest, type CommandsMessage, type Presence, type Report } from '../../protocol/commands.ts'
import { createIngest, type Ingest, type IngestOptions } from '../../ingest/index.ts'
import { bearer, call, jsonOf, type Answer } from '../helpers/http.ts'
import { tempDir, waitFor } from '../helpers/index.ts'

const GW = { gwA: 'sec-gwA-pad-0123', gwB: 'sec-gwB-pad-0123', gwN: 'sec-gwN-pad-0123' } as const
type Gw = keyof typeof GW
const CMD = 'cmd-default-0123456789'
const CMD_NORTH = 'cmd-north-0123456789'

type Rig = { ing: Ingest, base: string, dir: string, opts: IngestOptions }

async function start (t: TestContext, extra: IngestOptions = {}, dir?: string): Promise<Rig> {
  dir ??= await tempDir(t, 'ingest-cmd-')
  const tokensFile = join(dir, 'tokens.json')
  await writeFile(tokensFile, JSON.stringify({ gwN: { secret: GW.gwN, fleet: 'north' } }))
  const opts: IngestOptions = { port: 0, host: '127.0.0.1', dataDir: join(dir, 'db'), token: [`gwA:${GW.gwA}`, `gwB:${GW.gwB}`], tokensFile, commandToken: [`default:${CMD}`, `north:${CMD_NORTH}`], ...extra }
  const ing = await createIngest(opts)
  t.after(() => ing.close())
  return { ing, base: `http://127.0.0.1:${ing.port}`, dir, opts }
}

let batchNo = 0
async function reports (r: Rig, gw: Gw, reps: Report[], presence: Presence[] = [], as: string = gw): Promise<number[]> {
  const a = await call(`${r.base}/v1/gateway/command-reports`, { headers: { 'content-type': 'application/cbor', ...bearer(GW[gw]) }, body: encodeReportsRequest({ gateway: as, batch: `b${++batchNo}`, reports: reps, presence }) })
  assert.equal(a.status, 200, a.body.toString())
  const res = decodeReportsResponse(a.body)
  assert.equal(res.batch, `b${batchNo}`)
  return res.results.map((x) => x[1])
}
const online = (r: Rig, gw: Gw, device: string, connected: 0 | 1 = 1): Promise<number[]> => reports(r, gw, [], [[device, connected, Date.now()]])

async function poll (r: Rig, gw: Gw, waitMs = 0): Promise<CommandsMessage> {
  const a = await call(`${r.base}/v1/gateway/commands?wait=${waitMs}`, { headers: bearer(GW[gw]) })
  assert.equal(a.status, 200, a.body.toString())
  assert.equal(a.headers['content-type'], 'application/cbor')
  return decodeCommandsMessage(a.body)
}

type View = { id: string, device: string, state: string, gateway: string, result?: unknown, error?: string, cancel?: string, history: { state: string }[] }

function send (r: Rig, device: string, body: unknown, { query = '', token = CMD, headers = {} }: { query?: string, token?: string, headers?: Record<string, string> } = {}): Promise<Answer> {
  return call(`${r.base}/v1/devices/${device}/commands${query}`, { headers: { 'content-type': 'application/json', ...bearer(token), ...headers }, body: Buffer.from(JSON.stringify(body)) })
}
async function get (r: Rig, id: string, token = CMD): Promise<View> {
  const a = await call(`${r.base}/v1/commands/${id}`, { headers: bearer(token) })
  assert.equal(a.status, 200, a.body.toString())
  return jsonOf<View>(a)
}
function error (a: Answer, status: number, code: string, field?: string): { message: string } {
  assert.equal(a.status, status, a.body.toString())
  const e = jsonOf<{ error: string, message: string, field?: string }>(a)
  assert.equal(e.error, code)
  if (field !== undefined) assert.equal(e.field, field)
  return e
}

test('?wait: the device answers in time -> 200 with the result; the long poll brings the command at once', async (t) => {
  const r = await start(t)
  await online(r, 'gwA', 'dev1')
  const polled = poll(r, 'gwA', 20_000)
  const posted = send(r, 'dev1', { name: 'set-interval', args: { seconds: 30 } }, { query: '?wait=20000' })
  const msg = await polled
  assert.equal(msg.commands.length, 1)
  const c = msg.commands[0]!
  assert.deepEqual([c.device, c.name, c.args, c.n], ['dev1', 'set-interval', { seconds: 30 }, 1])
  const now = Date.now()
  assert.deepEqual(await reports(r, 'gwA', [[c.id, 'dev1', 'at-gateway', now], [c.id, 'dev1', 'delivered', now + 1], [c.id, 'dev1', 'completed', now + 2, { seconds: 30 }]]), [0, 0, 0])
  const a = await posted
  assert.equal(a.status, 200, a.body.toString())
  const v = jsonOf<View>(a)
  assert.equal(v.id, c.id)
  assert.equal(v.state, 'completed')
  assert.deepEqual(v.result, { seconds: 30 })
  assert.deepEqual(v.history.map((h) => h.state), ['queued', 'at-gateway', 'delivered', 'completed'])
  assert.deepEqual((await poll(r, 'gwA')).commands, [], 'a reported command is not offered again')
})

test('?wait runs out -> 202 with the state reached; GET shows the device\'s answer after the report', async (t) => {
  const r = await start(t)
  await online(r, 'gwA', 'dev1')
  const a = await send(r, 'dev1', { name: 'reboot' }, { query: '?wait=300' })
  assert.equal(a.status, 202)
  const v = jsonOf<View>(a)
  assert.equal(v.state, 'queued')
  assert.equal((await poll(r, 'gwA')).commands[0]?.id, v.id)
  assert.deepEqual(await reports(r, 'gwA', [[v.id, 'dev1', 'at-gateway', Date.now()], [v.id, 'dev1', 'rejected', Date.now(), 'busy']]), [0, 0])
  const g = await get(r, v.id)
  assert.equal(g.state, 'rejected')
  assert.equal(g.error, 'busy')
  // without wait: 202 at once
  assert.equal((await send(r, 'dev1', { name: 'reboot' })).status, 202)
})

test('Idempotency-Key: twice -> one command; the same key with another body -> 422', async (t) => {
  const r = await start(t)
  await online(r, 'gwA', 'dev1')
  const h = { 'idempotency-key': 'order-17' }
  const a = jsonOf<View>(await send(r, 'dev1', { name: 'x', args: 1 }, { headers: h }))
  const b = await send(r, 'dev1', { name: 'x', args: 1 }, { headers: h })
  assert.equal(b.status, 202)
  assert.equal(jsonOf<View>(b).id, a.id)
  const list = jsonOf<{ commands: View[] }>(await call(`${r.base}/v1/commands?device=dev1`, { headers: bearer(CMD) }))
  assert.equal(list.commands.length, 1)
  error(await send(r, 'dev1', { name: 'x', args: 2 }, { headers: h }), 422, 'idempotency_key_reused', 'idempotency-key')
})

test('offline=fail -> 409, unknown device -> 404, limits and fields named, tokens scoped by fleet', async (t) => {
  const r = await start(t, { commandMaxPendingPerDevice: 2, commandMaxArgsBytes: 32 })
  error(await send(r, 'ghost', { name: 'x' }), 404, 'unknown_device', 'device')
  await online(r, 'gwA', 'dev1')
  await online(r, 'gwA', 'dev1', 0)
  error(await send(r, 'dev1', { name: 'x' }, { query: '?offline=fail' }), 409, 'device_offline', 'offline')
  await online(r, 'gwA', 'dev1', 1)
  assert.equal((await send(r, 'dev1', { name: 'x' }, { query: '?offline=fail' })).status, 202)
  assert.match(error(await send(r, 'dev1', { name: 'x', args: 'y'.repeat(40) }), 413, 'args_too_large', 'args').message, /--command-max-args-bytes/)
  error(await send(r, 'dev1', { name: '' }), 400, 'invalid_command', 'name')
  error(await send(r, 'dev1', { name: 'x', ttlMs: 'soon' }), 400, 'invalid_command', 'ttlMs')
  const id = jsonOf<View>(await send(r, 'dev1', { name: 'x' })).id
  assert.match(error(await send(r, 'dev1', { name: 'x' }), 429, 'too_many_pending', 'device').message, /--command-max-pending-per-device\) is 2/)
  // tokens
  error(await send(r, 'dev1', { name: 'x' }, { token: 'wrong-token-0123456789' }), 401, 'unauthorized', 'authorization')
  error(await send(r, 'dev1', { name: 'x' }, { token: GW.gwA }), 401, 'unauthorized')
  assert.equal((await call(`${r.base}/v1/commands/${id}`, { headers: bearer(CMD_NORTH) })).status, 404, 'another fleet does not see it')
  error(await send(r, 'dev1', { name: 'x' }, { token: CMD_NORTH }), 404, 'unknown_device')
  error(await call(`${r.base}/v1/gateway/commands`, { headers: bearer(CMD) }), 401, 'unauthorized')
  const forged = await call(`${r.base}/v1/gateway/command-reports`, { headers: { 'content-type': 'application/cbor', ...bearer(GW.gwB) }, body: encodeReportsRequest({ gateway: 'gwA', batch: 'f', reports: [], presence: [] }) })
  error(forged, 403, 'forbidden', 'gateway')
  const m = await call(`${r.base}/metrics`)
  assert.match(m.body.toString(), /ingest_command_refusals_total\{reason="too_many_pending"\} 1/)
  assert.match(m.body.toString(), /ingest_commands\{state="queued"\} 2/)
})

test('cancel: queued -> 200 cancelled and never offered; at-gateway -> 202 requested, cancelled when given back; delivered -> 409', async (t) => {
  const r = await start(t)
  await online(r, 'gwA', 'dev1')
  const a = jsonOf<View>(await send(r, 'dev1', { name: 'x' }))
  const d = await call(`${r.base}/v1/commands/${a.id}`, { method: 'DELETE', headers: bearer(CMD) })
  assert.equal(d.status, 200)
  assert.equal(jsonOf<View>(d).state, 'cancelled')
  const b = jsonOf<View>(await send(r, 'dev1', { name: 'y' }))
  assert.deepEqual((await poll(r, 'gwA')).commands.map((c) => c.id), [b.id], 'the cancelled one is not offered')
  await reports(r, 'gwA', [[b.id, 'dev1', 'at-gateway', Date.now()]])
  const d2 = await call(`${r.base}/v1/commands/${b.id}`, { method: 'DELETE', headers: bearer(CMD) })
  assert.equal(d2.status, 202)
  assert.equal(jsonOf<View>(d2).cancel, 'requested')
  // a DELETE again before the gateway answers: the same 202 and body (nothing changed)
  const d2again = await call(`${r.base}/v1/commands/${b.id}`, { method: 'DELETE', headers: bearer(CMD) })
  assert.equal(d2again.status, 202)
  assert.equal(d2again.body.toString(), d2.body.toString())
  assert.deepEqual((await poll(r, 'gwA')).recalls, [{ id: b.id, device: 'dev1', cancel: true }])
  assert.deepEqual(await reports(r, 'gwA', [[b.id, 'dev1', 'recalled', Date.now()]]), [0])
  assert.equal((await get(r, b.id)).state, 'cancelled')
  const c = jsonOf<View>(await send(r, 'dev1', { name: 'z' }))
  await reports(r, 'gwA', [[c.id, 'dev1', 'at-gateway', Date.now()], [c.id, 'dev1', 'delivered', Date.now()]])
  const d3 = await call(`${r.base}/v1/commands/${c.id}`, { method: 'DELETE', headers: bearer(CMD) })
  assert.match(error(d3, 409, 'not_cancellable', 'state').message, /delivered/)
})

test('recall: the device moves to gateway B while A holds its command undelivered; B gets it', async (t) => {
  const r = await start(t)
  await online(r, 'gwA', 'dev1')
  const v = jsonOf<View>(await send(r, 'dev1', { name: 'x' }))
  assert.equal((await poll(r, 'gwA')).commands[0]?.id, v.id)
  await reports(r, 'gwA', [[v.id, 'dev1', 'at-gateway', Date.now()]])
  const pollA = poll(r, 'gwA', 20_000)
  await online(r, 'gwB', 'dev1')
  assert.deepEqual((await pollA).recalls, [{ id: v.id, device: 'dev1', cancel: false }])
  const pollB = poll(r, 'gwB', 20_000)
  assert.deepEqual(await reports(r, 'gwA', [[v.id, 'dev1', 'recalled', Date.now()]]), [0])
  assert.deepEqual((await pollB).commands.map((c) => c.id), [v.id])
  const g = await get(r, v.id)
  assert.equal(g.gateway, 'gwB')
  assert.deepEqual(g.history.map((h) => h.state), ['queued', 'at-gateway', 'queued'])
  assert.deepEqual(await reports(r, 'gwB', [[v.id, 'dev1', 'at-gateway', Date.now()], [v.id, 'dev1', 'delivered', Date.now()], [v.id, 'dev1', 'completed', Date.now(), 'ok']]), [0, 0, 0])
  assert.equal((await get(r, v.id)).state, 'completed')
})

test('reports: another device\'s command, an unknown id, a gateway of another fleet -> rejected (3)', async (t) => {
  const r = await start(t)
  await online(r, 'gwA', 'dev1')
  await online(r, 'gwA', 'dev2')
  const v = jsonOf<View>(await send(r, 'dev1', { name: 'x' }))
  assert.deepEqual(await reports(r, 'gwA', [[v.id, 'dev2', 'delivered', Date.now()], ['c-none', 'dev1', 'delivered', Date.now()]]), [3, 3])
  assert.deepEqual(await reports(r, 'gwN', [[v.id, 'dev1', 'at-gateway', Date.now()]]), [3])
  assert.equal((await get(r, v.id)).state, 'queued')
  const m = (await call(`${r.base}/metrics`)).body.toString()
  assert.match(m, /ingest_command_reports_total\{code="3"\} 3/)
})

test('expiry: a queued command no gateway took is expired by the ingest at its TTL', async (t) => {
  const r = await start(t)
  await online(r, 'gwA', 'dev1')
  const v = jsonOf<View>(await send(r, 'dev1', { name: 'x', ttlMs: 1000 }))
  const g = await waitFor(async () => { const x = await get(r, v.id); return x.state === 'expired' ? x : null }, { timeoutMs: 10_000, what: 'the command expired' })
  assert.deepEqual(g.history.map((h) => h.state), ['queued', 'expired'])
  assert.deepEqual((await poll(r, 'gwA')).commands, [])
  const feed = jsonOf<{ commands: View[] }>(await call(`${r.base}/v1/commands?state=expired`, { headers: bearer(CMD) }))
  assert.deepEqual(feed.commands.map((c) => c.id), [v.id])
})

test('restart: close and createIngest again on the same data dir keeps commands in every state', async (t) => {
  const r = await start(t, { commandMaxPendingPerDevice: 50 })
  await online(r, 'gwA', 'dev1')
  const mk = async (): Promise<string> => jsonOf<View>(await send(r, 'dev1', { name: 'x' })).id
  const ids = { queued: await mk(), 'at-gateway': await mk(), delivered: await mk(), completed: await mk(), rejected: await mk(), cancelled: await mk(), expired: await mk() }
  const at = Date.now()
  await reports(r, 'gwA', [
    [ids['at-gateway'], 'dev1', 'at-gateway', at],
    [ids.delivered, 'dev1', 'at-gateway', at], [ids.delivered, 'dev1', 'delivered', at],
    [ids.completed, 'dev1', 'completed', at, 1],
    [ids.rejected, 'dev1', 'rejected', at, 'no'],
    [ids.expired, 'dev1', 'expired', at]
  ])
  assert.equal((await call(`${r.base}/v1/commands/${ids.cancelled}`, { method: 'DELETE', headers: bearer(CMD) })).status, 200)
  await r.ing.close()
  const r2 = await start(t, r.opts, r.dir)
  for (const [state, id] of Object.entries(ids)) assert.equal((await get(r2, id)).state, state, id)
  assert.deepEqual((await poll(r2, 'gwA')).commands.map((c) => c.id), [ids.queued])
  const next = jsonOf<View>(await send(r2, 'dev1', { name: 'x' }))
  assert.equal((await poll(r2, 'gwA')).commands.find((c) => c.id === next.id)?.n, 8, 'n goes on after the restart')
})
