// The ingest's command state machine (ingest/commands/index.ts) over the LevelDB command
// store: creation and its limits, routing by presence, gateway reports and their codes,
// recalls, cancels, expiry. A fake clock drives every time; the store is a real LevelDB in a
// temp dir (the store is what the state machine is programmed against).
import assert from 'node:assert/strict'
import test, { type TestContext } from 'node:test'
import { Commands, type CommandsOptions } from '../../ingest/commands/index.ts'
import { LevelDbCommandStore } from '../../ingest/commands/leveldb-store.ts'
import { httpErrorOfCommand } from '../../ingest/commands/http.ts'
import { CommandRefusal } from '../../ingest/refusal.ts'
import type { HttpError } from '../../protocol/errors.ts'
import type { Report } from '../../protocol/commands.ts'
import { tempDir, waitFor } from '../helpers/index.ts'

type Rig = { c: Commands, store: LevelDbCommandStore, clock: { t: number }, refusals: string[], transitions: string[], dir: string }

async function rig (t: TestContext, opts: Partial<CommandsOptions> = {}, dir?: string): Promise<Rig> {
  dir ??= await tempDir(t, 'cmd-unit-')
  const store = await LevelDbCommandStore.open({ dataDir: dir })
  const clock = { t: 1_000_000 }
  const refusals: string[] = []
  const transitions: string[] = []
  const c = new Commands(store, {
    ttlMs: 60_000, maxTtlMs: 600_000, maxWaitMs: 5000, maxArgsBytes: 64, maxPendingPerDevice: 3, rate: 1000, presenceTtlMs: 90_000, expiryGraceMs: 10_000, sweepMs: 3_600_000, now: () => clock.t, ...opts
  }, { refusal: (r) => refusals.push(r), transition: (s) => transitions.push(s) })
  t.after(async () => { await c.close(); await store.close() })
  return { c, store, clock, refusals, transitions, dir }
}

const connect = (r: Rig, gw: string, device: string, connected: 0 | 1 = 1, fleet = 'default'): Promise<unknown> =>
  r.c.applyReports(gw, fleet, { reports: [], presence: [[device, connected, r.clock.t]] })
const report = (r: Rig, gw: string, reports: Report[], fleet = 'default'): Promise<unknown> => r.c.applyReports(gw, fleet, { reports, presence: [] })
const create = (r: Rig, device: string, body: unknown, extra: { idempotencyKey?: string, offlineFail?: boolean, fleet?: string } = {}) =>
  r.c.create(device, body, { fleet: extra.fleet ?? 'default', caller: 'tok', ...extra })

/** The state machine refuses without HTTP; the HTTP front answers the refusal with `status` (commands/http.ts). */
async function refused (p: Promise<unknown>, status: number, error: string, field?: string): Promise<HttpError> {
  const r = await p.then(() => null, (err: unknown) => err)
  assert.ok(r instanceof CommandRefusal, `expected a CommandRefusal, got ${String(r)}`)
  const e = httpErrorOfCommand(r)
  assert.equal(e.status, status, e.message)
  assert.equal(e.errorCode, error)
  if (field !== undefined) assert.equal(e.field, field)
  return e
}

test('create: routed to the gateway that reports the device, queued, n counts up per device', async (t) => {
  const r = await rig(t)
  await connect(r, 'gwA', 'dev1')
  const a = await create(r, 'dev1', { name: 'set-interval', args: { seconds: 30 } })
  const b = await create(r, 'dev1', { name: 'reboot' })
  assert.equal(a.record.state, 'queued')
  assert.equal(a.record.gateway, 'gwA')
  assert.deepEqual([a.record.n, b.record.n], [1, 2])
  assert.equal(a.record.expiresAt, r.clock.t + 60_000)
  const p = await r.c.pendingFor('gwA')
  assert.deepEqual(p.commands.map((c) => c.id), [a.record.id, b.record.id])
  assert.deepEqual((await r.c.pendingFor('gwB')).commands, [])
  assert.deepEqual(r.transitions, ['queued', 'queued'])
})

test('create: validation names the field, limits name the limit', async (t) => {
  const r = await rig(t)
  await refused(create(r, 'dev1', { name: 'x' }), 404, 'unknown_device', 'device')
  await connect(r, 'gwA', 'dev1')
  await refused(create(r, 'dev1', { name: 'bad name' }), 400, 'invalid_command', 'name')
  await refused(create(r, 'dev1', { name: 'x', ttlMs: 0 }), 400, 'invalid_command', 'ttlMs')
  const long = await refused(create(r, 'dev1', { name: 'x', ttlMs: 600_001 }), 400, 'invalid_command', 'ttlMs')
  assert.match(long.message, /600000.*--command-max-ttl-ms/)
  await refused(create(r, 'dev1', { name: 'x', colour: 1 }), 400, 'invalid_command', 'colour')
  const big = await refused(create(r, 'dev1', { name: 'x', args: 'y'.repeat(100) }), 413, 'args_too_large', 'args')
  assert.match(big.message, /64 \(--command-max-args-bytes\)/)
  for (let i = 0; i < 3; i++) await create(r, 'dev1', { name: 'x' })
  const full = await refused(create(r, 'dev1', { name: 'x' }), 429, 'too_many_pending', 'device')
  assert.match(full.message, /limit \(--command-max-pending-per-device\) is 3/)
  assert.ok(r.refusals.includes('too_many_pending') && r.refusals.includes('args_too_large'))
})

test('create: the rate limit is a bucket of twice the rate per caller, with Retry-After', async (t) => {
  const r = await rig(t, { rate: 2, maxPendingPerDevice: 100 })
  await connect(r, 'gwA', 'dev1')
  for (let i = 0; i < 4; i++) await create(r, 'dev1', { name: 'x' })
  const e = await refused(create(r, 'dev1', { name: 'x' }), 429, 'rate_limited', 'rate')
  assert.equal(e.headers['retry-after'], '1')
  await r.c.create('dev1', { name: 'x' }, { fleet: 'default', caller: 'another token' })
  r.clock.t += 500
  await create(r, 'dev1', { name: 'x' })
})

test('Idempotency-Key: the same request makes one command; another request with it is 422', async (t) => {
  const r = await rig(t)
  await connect(r, 'gwA', 'dev1')
  const a = await create(r, 'dev1', { name: 'x', args: [1] }, { idempotencyKey: 'k1' })
  const b = await create(r, 'dev1', { name: 'x', args: [1] }, { idempotencyKey: 'k1' })
  assert.equal(a.created, true)
  assert.equal(b.created, false)
  assert.equal(b.record.id, a.record.id)
  await refused(create(r, 'dev1', { name: 'x', args: [2] }, { idempotencyKey: 'k1' }), 422, 'idempotency_key_reused', 'idempotency-key')
  // a final command's key still names it (the store keeps the key)
  await report(r, 'gwA', [[a.record.id, 'dev1', 'completed', r.clock.t, 'ok']])
  const c = await create(r, 'dev1', { name: 'x', args: [1] }, { idempotencyKey: 'k1' })
  assert.equal(c.record.id, a.record.id)
  assert.equal(c.record.state, 'completed')
  assert.equal((await r.store.counts()).queued, 0)
})

test('offline=fail: 409 unless a gateway heard from within --presence-ttl-ms reports the device connected', async (t) => {
  const r = await rig(t)
  await connect(r, 'gwA', 'dev1')
  await create(r, 'dev1', { name: 'x' }, { offlineFail: true })
  r.clock.t += 90_001
  await refused(create(r, 'dev1', { name: 'x' }, { offlineFail: true }), 409, 'device_offline', 'offline')
  await r.store.touchGateway('gwA', r.clock.t)
  await create(r, 'dev1', { name: 'x' }, { offlineFail: true })
  await connect(r, 'gwA', 'dev1', 0)
  await refused(create(r, 'dev1', { name: 'x' }, { offlineFail: true }), 409, 'device_offline')
  // without offline=fail it is queued for the gateway that last had the device
  assert.equal((await create(r, 'dev1', { name: 'x' })).record.gateway, 'gwA')
})

test('reports: the path to completed, duplicates, and what is rejected', async (t) => {
  const r = await rig(t)
  await connect(r, 'gwA', 'dev1')
  await connect(r, 'gwA', 'dev2')
  await connect(r, 'gwN', 'dev1', 1, 'north')
  const { record } = await create(r, 'dev1', { name: 'x' })
  const other = await create(r, 'dev2', { name: 'x' })
  const at = r.clock.t
  const res = await r.c.applyReports('gwA', 'default', {
    presence: [],
    reports: [
      [record.id, 'dev1', 'at-gateway', at],
      [record.id, 'dev1', 'at-gateway', at], // repeated
      [record.id, 'dev1', 'delivered', at + 1],
      [record.id, 'dev1', 'completed', at + 2, { seconds: 30 }],
      [record.id, 'dev1', 'rejected', at + 3, 'late'], // another final state: not recorded
      ['nope', 'dev1', 'delivered', at],
      [other.record.id, 'dev1', 'delivered', at] // another device's command
    ]
  })
  assert.deepEqual(res.map((x) => x[1]), [0, 1, 0, 0, 1, 3, 3])
  const got = await r.c.get(record.id, 'default')
  assert.equal(got?.state, 'completed')
  assert.deepEqual(got?.result, { seconds: 30 })
  assert.deepEqual(got?.history.map((h) => h.state), ['queued', 'at-gateway', 'delivered', 'completed'])
  // a gateway of another fleet may not touch it
  const foreign = await r.c.applyReports('gwN', 'north', { presence: [], reports: [[other.record.id, 'dev2', 'delivered', at]] })
  assert.equal(foreign[0]![1], 3)
  assert.equal(await r.c.get(record.id, 'north'), null, 'another fleet does not see it')
  // a delivered command answered at another gateway of the fleet is accepted
  await report(r, 'gwA', [[other.record.id, 'dev2', 'at-gateway', at], [other.record.id, 'dev2', 'delivered', at]])
  const res2 = await report(r, 'gwB', [[other.record.id, 'dev2', 'rejected', at, 'no']]) as [number, number][]
  assert.equal(res2[0]![1], 0)
  assert.equal((await r.c.get(other.record.id, '*'))?.error, 'no')
})

test('recall: the device moves to gateway B while its command is held undelivered at A', async (t) => {
  const r = await rig(t)
  await connect(r, 'gwA', 'dev1')
  const { record } = await create(r, 'dev1', { name: 'x' })
  await report(r, 'gwA', [[record.id, 'dev1', 'at-gateway', r.clock.t]])
  assert.deepEqual(await r.c.pendingFor('gwA'), { commands: [], recalls: [] })
  r.clock.t += 10
  await connect(r, 'gwA', 'dev1', 0)
  await connect(r, 'gwB', 'dev1', 1)
  assert.deepEqual((await r.c.pendingFor('gwA')).recalls, [{ id: record.id, device: 'dev1', cancel: false }])
  const res = await report(r, 'gwA', [[record.id, 'dev1', 'recalled', r.clock.t]]) as [number, number][]
  assert.equal(res[0]![1], 0)
  const moved = await r.c.get(record.id, 'default')
  assert.equal(moved?.state, 'queued')
  assert.equal(moved?.gateway, 'gwB')
  assert.deepEqual(moved?.history.map((h) => h.state), ['queued', 'at-gateway', 'queued'])
  assert.deepEqual((await r.c.pendingFor('gwB')).commands.map((c) => c.id), [record.id])
  assert.deepEqual(await r.c.pendingFor('gwA'), { commands: [], recalls: [] })
  // a second recalled report is a duplicate
  assert.equal(((await report(r, 'gwA', [[record.id, 'dev1', 'recalled', r.clock.t]])) as [number, number][])[0]![1], 1)
  // a queued command follows the device at once
  const q = await create(r, 'dev1', { name: 'y' })
  await connect(r, 'gwA', 'dev1', 1)
  r.clock.t += 10
  await connect(r, 'gwA', 'dev1', 1)
  assert.equal((await r.c.get(q.record.id, 'default'))?.gateway, 'gwA')
})

test('recall: a command delivered before the recall stays where it is', async (t) => {
  const r = await rig(t)
  await connect(r, 'gwA', 'dev1')
  const { record } = await create(r, 'dev1', { name: 'x' })
  await report(r, 'gwA', [[record.id, 'dev1', 'at-gateway', r.clock.t]])
  r.clock.t += 10
  await connect(r, 'gwB', 'dev1', 1)
  await report(r, 'gwA', [[record.id, 'dev1', 'delivered', r.clock.t]])
  const got = await r.c.get(record.id, 'default')
  assert.equal(got?.state, 'delivered')
  assert.equal(got?.recall, null)
  assert.equal(((await report(r, 'gwA', [[record.id, 'dev1', 'recalled', r.clock.t]])) as [number, number][])[0]![1], 3)
})

test('cancel: queued -> cancelled at once; at-gateway -> recall requested (once), cancelled when given back; delivered -> 409', async (t) => {
  const r = await rig(t, { maxPendingPerDevice: 10 })
  await connect(r, 'gwA', 'dev1')
  const a = await create(r, 'dev1', { name: 'x' })
  const ca = await r.c.cancel(a.record.id, 'default')
  assert.equal(ca.outcome, 'cancelled')
  assert.equal(ca.record.state, 'cancelled')
  assert.deepEqual((await r.c.pendingFor('gwA')).commands, [])
  const b = await create(r, 'dev1', { name: 'x' })
  await report(r, 'gwA', [[b.record.id, 'dev1', 'at-gateway', r.clock.t]])
  const cb = await r.c.cancel(b.record.id, 'default')
  assert.equal(cb.outcome, 'requested')
  assert.equal(cb.record.recall, 'cancel')
  // a second DELETE while the gateway has not answered: nothing changes
  r.clock.t += 5
  const again = await r.c.cancel(b.record.id, 'default')
  assert.equal(again.outcome, 'already-requested')
  assert.deepEqual(again.record, cb.record)
  assert.deepEqual((await r.c.pendingFor('gwA')).recalls, [{ id: b.record.id, device: 'dev1', cancel: true }])
  await report(r, 'gwA', [[b.record.id, 'dev1', 'recalled', r.clock.t]])
  assert.equal((await r.c.get(b.record.id, 'default'))?.state, 'cancelled')
  const c = await create(r, 'dev1', { name: 'x' })
  await report(r, 'gwA', [[c.record.id, 'dev1', 'at-gateway', r.clock.t], [c.record.id, 'dev1', 'delivered', r.clock.t]])
  const e = await refused(r.c.cancel(c.record.id, 'default'), 409, 'not_cancellable', 'state')
  assert.match(e.message, /is delivered/)
  await refused(r.c.cancel(c.record.id, 'north'), 404, 'not_found')
})

test('expiry: queued at expiresAt; held ones only after the grace; a late answer is a duplicate', async (t) => {
  const r = await rig(t, { maxPendingPerDevice: 10 })
  await connect(r, 'gwA', 'dev1')
  const q = await create(r, 'dev1', { name: 'x', ttlMs: 1000 })
  const h = await create(r, 'dev1', { name: 'x', ttlMs: 1000 })
  await report(r, 'gwA', [[h.record.id, 'dev1', 'at-gateway', r.clock.t]])
  r.clock.t += 999
  assert.equal(await r.c.sweep(), 0)
  r.clock.t += 1
  assert.deepEqual((await r.c.pendingFor('gwA')).commands, [], 'an expired queued command is not offered')
  assert.equal(await r.c.sweep(), 1)
  assert.equal((await r.c.get(q.record.id, 'default'))?.state, 'expired')
  assert.equal((await r.c.get(h.record.id, 'default'))?.state, 'at-gateway')
  r.clock.t += 10_000
  assert.equal(await r.c.sweep(), 1)
  assert.equal((await r.c.get(h.record.id, 'default'))?.state, 'expired')
  assert.equal(((await report(r, 'gwA', [[h.record.id, 'dev1', 'completed', r.clock.t, 1]])) as [number, number][])[0]![1], 1)
  assert.equal((await r.store.counts()).expired, 2)
})

test('wait: resolves when the command turns final, or with its state at the deadline', async (t) => {
  const r = await rig(t, { now: Date.now })
  await r.c.applyReports('gwA', 'default', { reports: [], presence: [['dev1', 1, Date.now()]] })
  const { record } = await create(r, 'dev1', { name: 'x' })
  const waiting = r.c.wait(record.id, 5000)
  await report(r, 'gwA', [[record.id, 'dev1', 'completed', Date.now(), 'done']])
  const done = await waiting
  assert.equal(done?.state, 'completed')
  const other = await create(r, 'dev1', { name: 'x' })
  const timedOut = await r.c.wait(other.record.id, 30)
  assert.equal(timedOut?.state, 'queued')
})

test('wait: a caller gone (its signal aborted) ends the wait at once and leaves the command as it is', async (t) => {
  const r = await rig(t, { now: Date.now })
  await r.c.applyReports('gwA', 'default', { reports: [], presence: [['dev1', 1, Date.now()]] })
  const { record } = await create(r, 'dev1', { name: 'x' })
  const gone = new AbortController()
  const waiting = r.c.wait(record.id, 5000, gone.signal)
  await waitFor(() => r.c.waiters === 1, { timeoutMs: 2000, what: 'the waiter' })
  const t0 = Date.now()
  gone.abort()
  assert.equal((await waiting)?.state, 'queued')
  assert.ok(Date.now() - t0 < 200, `the wait ended ${Date.now() - t0} ms after the abort`)
  assert.equal(r.c.waiters, 0)
  assert.equal((await r.c.get(record.id, 'default'))?.state, 'queued')
  // already aborted: no wait at all
  assert.equal((await r.c.wait(record.id, 5000, AbortSignal.abort()))?.state, 'queued')
  assert.equal(r.c.waiters, 0)
})

test('long poll: waitPending answers when a command is routed to the gateway', async (t) => {
  const r = await rig(t, { now: Date.now })
  await r.c.applyReports('gwA', 'default', { reports: [], presence: [['dev1', 1, Date.now()]] })
  let answered = false
  const poll = r.c.waitPending('gwA', 5000).then((p) => { answered = true; return p })
  await r.c.pendingFor('gwA') // a store round trip after the poll started
  assert.equal(answered, false)
  const { record } = await create(r, 'dev1', { name: 'x' })
  assert.deepEqual((await poll).commands.map((c) => c.id), [record.id])
})

test('long poll: a gateway gone (its signal aborted) ends the poll at once, and what it read is offered again at once', async (t) => {
  const r = await rig(t, { now: Date.now })
  await r.c.applyReports('gwA', 'default', { reports: [], presence: [['dev1', 1, Date.now()]] })
  // the poll is parked on its wake event once it has read the gateway's pending work
  let reads = 0
  const read = r.store.openForGateway.bind(r.store)
  r.store.openForGateway = async (...a) => { const x = await read(...a); reads++; return x }
  const gone = new AbortController()
  const poll = r.c.waitPending('gwA', 5000, gone.signal)
  await waitFor(() => r.c.pollers === 1 && reads === 1, { timeoutMs: 2000, what: 'the poll waiting' })
  const t0 = Date.now()
  gone.abort()
  assert.deepEqual(await poll, { commands: [], recalls: [] })
  assert.ok(Date.now() - t0 < 200, `the poll ended ${Date.now() - t0} ms after the abort`)
  assert.equal(r.c.pollers, 0)
  // a poll whose gateway is already gone does not note its commands as offered: nobody got them
  const { record } = await create(r, 'dev1', { name: 'x' })
  assert.deepEqual((await r.c.waitPending('gwA', 5000, AbortSignal.abort())).commands.map((c) => c.id), [record.id])
  const t1 = Date.now()
  assert.deepEqual((await r.c.waitPending('gwA', 5000)).commands.map((c) => c.id), [record.id])
  assert.ok(Date.now() - t1 < 1000, `the next poll got the command after ${Date.now() - t1} ms, not at once`)
  assert.equal(r.c.pollers, 0)
})

test('the store survives a reopen: every record, index, counter and presence entry', async (t) => {
  const dir = await tempDir(t, 'cmd-unit-')
  const r1 = await rig(t, { maxPendingPerDevice: 10 }, dir)
  await connect(r1, 'gwA', 'dev1')
  const a = await create(r1, 'dev1', { name: 'x' }, { idempotencyKey: 'k' })
  const b = await create(r1, 'dev1', { name: 'x' })
  await report(r1, 'gwA', [[b.record.id, 'dev1', 'at-gateway', r1.clock.t]])
  await r1.c.close()
  await r1.store.close()
  const r2 = await rig(t, { maxPendingPerDevice: 10 }, dir)
  assert.equal((await r2.c.get(a.record.id, 'default'))?.state, 'queued')
  assert.equal((await r2.c.get(b.record.id, 'default'))?.state, 'at-gateway')
  assert.equal((await create(r2, 'dev1', { name: 'x' }, { idempotencyKey: 'k' })).record.id, a.record.id)
  assert.equal((await create(r2, 'dev1', { name: 'z' })).record.n, 3)
  const counts = await r2.store.counts()
  assert.equal(counts.queued, 2)
  assert.equal(counts['at-gateway'], 1)
  const page = await r2.c.list('default', { limit: 2 })
  assert.equal(page.commands.length, 2)
  const rest = await r2.c.list('default', { limit: 2, cursor: page.next! })
  assert.equal(rest.commands.length, 1)
  assert.equal(rest.next, null)
})

test('presence snapshot: devices a gateway no longer lists count as not connected there', async (t) => {
  const r = await rig(t)
  await connect(r, 'gwA', 'dev1')
  await connect(r, 'gwA', 'dev2')
  await r.c.applyReports('gwA', 'default', { reports: [], presence: [['dev2', 1, r.clock.t]], snapshot: true })
  await refused(create(r, 'dev1', { name: 'x' }, { offlineFail: true }), 409, 'device_offline')
  assert.equal((await create(r, 'dev2', { name: 'x' }, { offlineFail: true })).record.gateway, 'gwA')
  const p = await r.store.presenceOf('default', 'dev1')
  assert.deepEqual(p.map((e) => [e.gateway, e.connected]), [['gwA', false]])
  // an entry older than the one held is ignored
  await r.c.applyReports('gwA', 'default', { reports: [], presence: [['dev2', 0, r.clock.t - 1]] })
  assert.equal((await r.store.presenceOf('default', 'dev2'))[0]?.connected, true)
})

test('pendingFor: one message carries at most about maxMessageBytes of commands; the rest come in the next', async (t) => {
  const r = await rig(t, { maxArgsBytes: 4096, maxMessageBytes: 10_000, maxPendingPerDevice: 10 })
  await connect(r, 'gwA', 'dev1')
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push((await create(r, 'dev1', { name: 'x', args: 'y'.repeat(4000) })).record.id)
  const first = await r.c.pendingFor('gwA')
  assert.deepEqual(first.commands.map((c) => c.id), ids.slice(0, 2))
  await report(r, 'gwA', first.commands.map((c): Report => [c.id, 'dev1', 'at-gateway', r.clock.t]))
  assert.deepEqual((await r.c.pendingFor('gwA')).commands.map((c) => c.id), ids.slice(2, 4))
})
