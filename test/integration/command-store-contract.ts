/**
 * The command store contract (ingest/commands/store.ts), run against every implementation:
 * PostgreSQL in command-store-postgres.test.ts, LevelDB beside it. `open` gives a fresh,
 * empty store location per test: `store` opened on it, `reopen` opening it again (the
 * suite closes `store` first: durability), `cleanup` freeing the location. The suite closes
 * every store it was given, once; `cleanup` runs after that.
 *
 * What the suite fixes beyond the interface's words (both stores must agree):
 * - create sets `updatedAt` to `createdAt`; update stores the records `change` returned as
 *   they are, `updatedAt` included (the caller sets it);
 * - a create answered from an idempotency key writes nothing and takes no `n` (the next
 *   create of that device gets the next number without a gap); the key is per fleet, not
 *   per device; an update that drops `idempotencyKey` frees the key;
 * - an optional field that is absent stays absent (no `result: undefined` key), and
 *   `result: null` is a result (kept, told apart from no result);
 * - openForGateway orders by (device, n); openForDevice by n; dueForExpiry's order is not
 *   fixed (only which commands, and `limit`); list orders by (updatedAt, id), a bad cursor
 *   is a ValidationError naming `cursor`;
 * - presence: `seenAt` is per gateway (the latest of setPresence and touchGateway for that
 *   gateway, also when an entry was ignored as older); an entry whose `at` equals the held
 *   one is applied; a snapshot leaves the devices it does not list not connected (their
 *   entries stay, `at` unspecified); presenceOf's order is not fixed.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { COMMAND_STATES, type CommandState } from '../../protocol/commands.ts'
import type { CommandRecord, CommandStore, NewCommand, PresenceEntry } from '../../ingest/commands/store.ts'

export type CommandStoreLocation = { store: CommandStore, reopen?: () => Promise<CommandStore>, cleanup: () => Promise<void> }

const T0 = 1_765_000_000_000

/** A new command: queued, unrouted, fleet f1, device d1, unless told otherwise. */
export function newCommand (id: string, over: Partial<NewCommand> = {}): NewCommand {
  const createdAt = over.createdAt ?? T0
  return {
    id,
    fleet: 'f1',
    device: 'd1',
    name: 'set-interval',
    args: { seconds: 30 },
    createdAt,
    expiresAt: createdAt + 60_000,
    state: 'queued',
    gateway: null,
    recall: null,
    history: [{ state: 'queued', at: createdAt }],
    ...over
  }
}

/** A record moved to `state` at `at` (history and updatedAt too), optionally routed. */
function moved (r: CommandRecord, state: CommandState, at: number, gateway?: string): CommandRecord {
  return { ...r, state, updatedAt: at, ...(gateway === undefined ? {} : { gateway }), history: [...r.history, { state, at, ...(gateway === undefined ? {} : { gateway }) }] }
}

const byFeed = (a: CommandRecord, b: CommandRecord): number => a.updatedAt - b.updatedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
const ids = (rs: readonly (CommandRecord | null)[]): (string | null)[] => rs.map((r) => r?.id ?? null)

export function commandStoreContract (name: string, open: () => Promise<CommandStoreLocation>): void {
  /** Opens a fresh location; every store the test gets is closed once at its end, then cleanup. */
  async function fresh (t: TestContext): Promise<{ store: CommandStore, reopen: () => Promise<CommandStore> }> {
    const loc = await open()
    const live = new Set<CommandStore>([loc.store])
    t.after(async () => {
      for (const s of live) await s.close()
      await loc.cleanup()
    })
    const reopen = async (): Promise<CommandStore> => {
      if (loc.reopen === undefined) assert.fail(`${name}: the factory gives no reopen; the durability cases need it`)
      for (const s of live) await s.close()
      live.clear()
      const s = await loc.reopen()
      live.add(s)
      return s
    }
    return { store: loc.store, reopen }
  }

  async function create (store: CommandStore, c: NewCommand): Promise<CommandRecord> {
    const r = await store.create(c)
    assert.equal(r.created, true, `${c.id} created`)
    return r.record
  }

  async function feed (store: CommandStore, q: Omit<Parameters<CommandStore['list']>[0], 'limit' | 'cursor'>, limit: number): Promise<CommandRecord[]> {
    const out: CommandRecord[] = []
    let cursor: string | undefined
    for (let pages = 0; pages < 200; pages++) {
      const page = await store.list({ ...q, limit, ...(cursor === undefined ? {} : { cursor }) })
      assert.ok(page.commands.length <= limit, 'a page holds at most limit commands')
      out.push(...page.commands)
      if (page.next === null) return out
      assert.equal(typeof page.next, 'string')
      cursor = page.next
    }
    throw new Error('paging does not terminate')
  }

  test(`${name}: create gives n 1, 2, 3 per (fleet, device), independently per device and fleet; the record is as given`, async (t) => {
    const { store } = await fresh(t)
    const ns: number[] = []
    for (const [id, fleet, device] of [['a1', 'f1', 'd1'], ['a2', 'f1', 'd1'], ['b1', 'f1', 'd2'], ['a3', 'f1', 'd1'], ['c1', 'f2', 'd1'], ['b2', 'f1', 'd2'], ['c2', 'f2', 'd1']] as const) {
      ns.push((await create(store, newCommand(id, { fleet, device, createdAt: T0 + ns.length }))).n)
    }
    assert.deepEqual(ns, [1, 2, 1, 3, 1, 2, 2])
    const c = newCommand('full', {
      device: 'd9',
      args: { nested: [1, 'two', { three: null, big: 2 ** 52 }], text: 'grüße ✓ 😀', flag: false },
      idempotencyKey: 'key-1',
      fingerprint: 'fp-1',
      gateway: 'gw1',
      history: [{ state: 'queued', at: T0 }, { state: 'at-gateway', at: T0 + 1, gateway: 'gw1' }],
      state: 'at-gateway'
    })
    const { record, created } = await store.create(c)
    assert.equal(created, true)
    assert.deepStrictEqual(record, { ...c, n: 1, updatedAt: c.createdAt }, 'create: updatedAt is createdAt, everything else as given')
    assert.deepStrictEqual(await store.get('full'), record)
    assert.deepStrictEqual(await store.get('a3'), { ...newCommand('a3', { createdAt: T0 + 3 }), n: 3, updatedAt: T0 + 3 }, 'no optional key appears')
    for (const args of [null, 'a string', 42, [1, 2], true]) {
      const r = await create(store, newCommand(`args-${JSON.stringify(args).replace(/\W/g, '')}`, { device: 'd8', args }))
      assert.deepStrictEqual((await store.get(r.id))!.args, args, `args ${JSON.stringify(args)} kept as is`)
    }
  })

  test(`${name}: an idempotency key returns the first command of the fleet with created false and writes nothing`, async (t) => {
    const { store } = await fresh(t)
    const first = await create(store, newCommand('k1', { idempotencyKey: 'K', fingerprint: 'fp-a' }))
    const again = await store.create(newCommand('k2', { idempotencyKey: 'K', fingerprint: 'fp-b', name: 'reboot' }))
    assert.equal(again.created, false)
    assert.deepStrictEqual(again.record, first, 'the first command, its fingerprint for the caller to compare')
    const otherDevice = await store.create(newCommand('k3', { device: 'd2', idempotencyKey: 'K' }))
    assert.equal(otherDevice.created, false, 'the key is per fleet, whatever the device')
    assert.equal(otherDevice.record.id, 'k1')
    assert.equal(await store.get('k2'), null, 'nothing written')
    assert.equal(await store.get('k3'), null)
    const otherFleet = await store.create(newCommand('k4', { fleet: 'f2', idempotencyKey: 'K' }))
    assert.equal(otherFleet.created, true, 'another fleet has its own keys')
    assert.equal((await create(store, newCommand('k5'))).n, 2, 'a create answered from the key took no n')
    assert.equal((await create(store, newCommand('k6', { device: 'd2' }))).n, 1)
  })

  test(`${name}: 20 concurrent creates with one key make exactly one command`, async (t) => {
    const { store } = await fresh(t)
    await create(store, newCommand('warm', { device: 'd1' }))
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      store.create(newCommand(`race-${String(i).padStart(2, '0')}`, { device: i % 2 === 0 ? 'd1' : 'd2', idempotencyKey: 'same' }))))
    const created = results.filter((r) => r.created)
    assert.equal(created.length, 1, 'exactly one created')
    const winner = created[0]!.record
    for (const r of results) assert.deepStrictEqual(r.record, winner, 'every caller gets the one command')
    const all = await feed(store, {}, 100)
    assert.deepEqual(all.map((r) => r.id).sort(), ['warm', winner.id].sort())
    assert.equal(winner.n, winner.device === 'd1' ? 2 : 1, 'the losers took no n')
    assert.equal((await create(store, newCommand('after', { device: winner.device }))).n, winner.n + 1)
  })

  test(`${name}: get of an unknown id is null`, async (t) => {
    const { store } = await fresh(t)
    assert.equal(await store.get('nope'), null)
    await create(store, newCommand('x'))
    assert.equal(await store.get('nope'), null)
    assert.equal(await store.get('X'), null, 'ids are case sensitive')
  })

  test(`${name}: update changes records, answers them as stored, and they persist across a reopen`, async (t) => {
    const { store, reopen } = await fresh(t)
    const a = await create(store, newCommand('u1', { idempotencyKey: 'ik', fingerprint: 'fp' }))
    const seen: (CommandRecord | null)[][] = []
    const out = await store.update(['u1', 'missing'], (cur) => {
      seen.push([...cur])
      const done = moved(cur[0]!, 'completed', T0 + 500, 'gw1')
      return [{ ...done, result: null, recall: null }, null]
    })
    assert.deepEqual(ids(seen[seen.length - 1]!), ['u1', null], 'change sees the records by position, null for an unknown id')
    assert.deepStrictEqual(seen[seen.length - 1]![0], a)
    const want: CommandRecord = { ...moved(a, 'completed', T0 + 500, 'gw1'), result: null }
    assert.deepStrictEqual(out, [want, null])
    assert.deepStrictEqual(await store.get('u1'), want, 'result null is kept as a result')
    const r2 = await store.update(['u1'], (cur) => [{ ...cur[0]!, error: 'late', result: { v: [1, 2] }, recall: 'cancel', idempotencyKey: undefined, updatedAt: T0 + 600 }])
    const { idempotencyKey: _drop, ...rest } = want
    const want2: CommandRecord = { ...rest, error: 'late', result: { v: [1, 2] }, recall: 'cancel', updatedAt: T0 + 600 }
    assert.deepStrictEqual(r2, [want2], 'an optional field set to undefined is removed')
    assert.deepStrictEqual(await store.update(['u1'], () => [null]), [want2], 'null: left as it is, answered as stored')
    const s2 = await reopen()
    assert.deepStrictEqual(await s2.get('u1'), want2, 'durable across close and reopen')
    assert.equal((await s2.create(newCommand('k', { idempotencyKey: 'ik' }))).created, true, 'a key taken off a command is free again')
  })

  test(`${name}: update of several ids is atomic: a change that throws writes nothing`, async (t) => {
    const { store } = await fresh(t)
    await create(store, newCommand('m1'))
    await create(store, newCommand('m2'))
    const both = await store.update(['m2', 'm1'], (cur) => cur.map((r) => moved(r!, 'cancelled', T0 + 10)))
    assert.deepEqual(both.map((r) => [r!.id, r!.state]), [['m2', 'cancelled'], ['m1', 'cancelled']], 'by position')
    await assert.rejects(store.update(['m1', 'm2'], (cur) => {
      cur.map((r) => moved(r!, 'expired', T0 + 20))
      throw new Error('changed my mind')
    }), /changed my mind/)
    assert.equal((await store.get('m1'))!.state, 'cancelled')
    assert.equal((await store.get('m2'))!.state, 'cancelled')
    await create(store, newCommand('m3'))
    await assert.rejects(store.update(['m3', 'm1'], (cur) => {
      const out = [moved(cur[0]!, 'at-gateway', T0 + 30, 'gw1'), cur[1]!]
      if (cur[1]!.state === 'cancelled') throw new Error('m1 is final')
      return out
    }), /m1 is final/)
    assert.equal((await store.get('m3'))!.state, 'queued', 'the first record of a failed update is not written either')
  })

  test(`${name}: concurrent updates of one id are serialised (every increment applies), crossing id orders do not deadlock`, async (t) => {
    const { store } = await fresh(t)
    await create(store, newCommand('s1', { args: { count: 0 } }))
    await create(store, newCommand('s2', { args: { count: 0 } }))
    const bump = (r: CommandRecord | null): CommandRecord => {
      const count = (r!.args as { count: number }).count + 1
      return { ...r!, args: { count }, updatedAt: T0 + count, history: [...r!.history, { state: r!.state, at: T0 + count }] }
    }
    await Promise.all(Array.from({ length: 12 }, (_, i) => store.update(['s1'], (cur) => [bump(cur[0]!)]).then(() => i)))
    const s1 = (await store.get('s1'))!
    assert.deepEqual(s1.args, { count: 12 }, 'no lost update')
    assert.equal(s1.history.length, 13)
    await Promise.all(Array.from({ length: 12 }, (_, i) => store.update(i % 2 === 0 ? ['s1', 's2'] : ['s2', 's1'], (cur) => cur.map(bump))))
    assert.deepEqual((await store.get('s1'))!.args, { count: 24 })
    assert.deepEqual((await store.get('s2'))!.args, { count: 12 })
  })

  test(`${name}: openForGateway, openForDevice and dueForExpiry list only open commands, in order, within limit`, async (t) => {
    const { store } = await fresh(t)
    const route = async (id: string, over: Partial<NewCommand>, state: CommandState, gateway: string | null): Promise<CommandRecord> => {
      const r = await create(store, newCommand(id, over))
      if (state === 'queued' && gateway === null) return r
      return (await store.update([id], (cur) => [{ ...moved(cur[0]!, state, T0 + 1, gateway ?? undefined), gateway }]))[0]!
    }
    // Created out of device order; n per device follows creation.
    await route('g-d2-1', { device: 'd2', expiresAt: T0 + 50 }, 'at-gateway', 'gw1')
    await route('g-d1-1', { device: 'd1', expiresAt: T0 + 10 }, 'queued', 'gw1')
    await route('g-d2-2', { device: 'd2', expiresAt: T0 + 30 }, 'delivered', 'gw1')
    await route('g-d1-2', { device: 'd1', expiresAt: T0 + 20 }, 'completed', 'gw1')
    await route('g-d1-3', { device: 'd1', expiresAt: T0 + 40 }, 'queued', 'gw1')
    await route('g-d3-1', { device: 'd3', expiresAt: T0 + 5 }, 'at-gateway', 'gw2')
    await route('g-d1-4', { device: 'd1', expiresAt: T0 + 1 }, 'queued', null)
    await route('g-d1-5', { device: 'd1', expiresAt: T0 + 2 }, 'expired', null)
    await route('o-d1-1', { fleet: 'f2', device: 'd1', expiresAt: T0 + 15 }, 'queued', 'gw9')
    for (const s of ['rejected', 'cancelled'] as const) await route(`fin-${s}`, { device: 'd4', expiresAt: T0 }, s, 'gw1')

    assert.deepEqual(ids(await store.openForGateway('gw1', 100)), ['g-d1-1', 'g-d1-3', 'g-d2-1', 'g-d2-2'], 'by device then n; final ones left out')
    assert.deepEqual(ids(await store.openForGateway('gw1', 3)), ['g-d1-1', 'g-d1-3', 'g-d2-1'], 'limit')
    assert.deepEqual(ids(await store.openForGateway('gw2', 100)), ['g-d3-1'])
    assert.deepEqual(ids(await store.openForGateway('nobody', 100)), [])

    assert.deepEqual(ids(await store.openForDevice('f1', 'd1')), ['g-d1-1', 'g-d1-3', 'g-d1-4'], 'by n, whatever the gateway, final ones left out')
    assert.deepEqual((await store.openForDevice('f1', 'd1')).map((r) => r.n), [1, 3, 4])
    assert.deepEqual(ids(await store.openForDevice('f2', 'd1')), ['o-d1-1'], 'per fleet')
    assert.deepEqual(ids(await store.openForDevice('f1', 'd4')), [])

    const due = async (now: number, limit: number): Promise<string[]> => ids(await store.dueForExpiry(now, limit)).map(String).sort()
    assert.deepEqual(await due(T0 + 20, 100), ['g-d1-1', 'g-d1-4', 'g-d3-1', 'o-d1-1'], 'expiresAt <= now and open (the final ones due long ago are left out)')
    assert.deepEqual(await due(T0 + 10, 100), ['g-d1-1', 'g-d1-4', 'g-d3-1'], 'expiresAt == now is due')
    assert.deepEqual(await due(T0, 100), [])
    const some = await due(T0 + 100, 2)
    assert.equal(some.length, 2, 'limit')
    for (const id of some) assert.ok(['g-d1-1', 'g-d1-3', 'g-d1-4', 'g-d2-1', 'g-d2-2', 'g-d3-1', 'o-d1-1'].includes(id), `${id} is due`)
  })

  test(`${name}: list pages through the feed exactly once in (updatedAt, id) order; filters by fleet, device, state, since`, async (t) => {
    const { store } = await fresh(t)
    const spec: [string, string, string, number][] = [
      ['e', 'f1', 'd1', 5], ['b', 'f1', 'd2', 5], ['a', 'f2', 'd1', 5], ['z', 'f1', 'd1', 1], ['c', 'f2', 'd2', 9],
      ['d', 'f1', 'd1', 3], ['y', 'f1', 'd2', 7], ['x', 'f2', 'd1', 2], ['w', 'f1', 'd1', 8], ['v', 'f1', 'd1', 4]
    ]
    for (const [id, fleet, device, at] of spec) await create(store, newCommand(id, { fleet, device, createdAt: T0 + at }))
    // Changes move commands along the feed, ties at one time broken by id.
    await store.update(['z', 'x'], (cur) => cur.map((r) => moved(r!, 'at-gateway', T0 + 9, 'gw1')))
    await store.update(['d'], (cur) => [moved(cur[0]!, 'completed', T0 + 20)])
    const all = (await Promise.all(spec.map(([id]) => store.get(id)))).map((r) => r!).sort(byFeed)
    assert.deepEqual(all.map((r) => r.id), ['v', 'a', 'b', 'e', 'y', 'w', 'c', 'x', 'z', 'd'])
    for (const limit of [1, 2, 3, 10, 11]) assert.deepStrictEqual(await feed(store, {}, limit), all, `limit ${limit}: every command once, in order`)
    const where = (p: (r: CommandRecord) => boolean): CommandRecord[] => all.filter(p)
    assert.deepStrictEqual(await feed(store, { fleet: 'f1' }, 2), where((r) => r.fleet === 'f1'))
    assert.deepStrictEqual(await feed(store, { fleet: 'f2', device: 'd1' }, 1), where((r) => r.fleet === 'f2' && r.device === 'd1'))
    assert.deepStrictEqual(await feed(store, { device: 'd2' }, 2), where((r) => r.device === 'd2'), 'device without fleet: every fleet')
    assert.deepStrictEqual(await feed(store, { state: 'at-gateway' }, 1), where((r) => r.state === 'at-gateway'))
    assert.deepStrictEqual(await feed(store, { since: T0 + 5 }, 2), where((r) => r.updatedAt >= T0 + 5), 'since: updatedAt >= since')
    assert.deepStrictEqual(await feed(store, { fleet: 'f1', state: 'queued', since: T0 + 5 }, 2), where((r) => r.fleet === 'f1' && r.state === 'queued' && r.updatedAt >= T0 + 5))
    assert.deepStrictEqual(await feed(store, { fleet: 'f3' }, 2), [])
    assert.deepStrictEqual(await feed(store, { since: T0 + 21 }, 2), [])
    const first = await store.list({ limit: 4 })
    assert.deepStrictEqual(first.commands, all.slice(0, 4))
    assert.notEqual(first.next, null)
    const last = await store.list({ limit: 10 })
    assert.equal(last.commands.length, 10)
    await assert.rejects(store.list({ limit: 2, cursor: 'not a cursor!' }), (err: Error & { field?: string }) => err.name === 'ValidationError' && err.field === 'cursor')
  })

  test(`${name}: counts by state`, async (t) => {
    const { store } = await fresh(t)
    const zero = Object.fromEntries(COMMAND_STATES.map((s) => [s, 0]))
    assert.deepStrictEqual(await store.counts(), zero)
    for (const id of ['q1', 'q2', 'q3', 'q4']) await create(store, newCommand(id, { device: id }))
    await store.update(['q1', 'q2'], (cur) => [moved(cur[0]!, 'completed', T0 + 1), moved(cur[1]!, 'at-gateway', T0 + 1, 'gw')])
    await store.update(['q3'], (cur) => [moved(cur[0]!, 'expired', T0 + 2)])
    assert.deepStrictEqual(await store.counts(), { ...zero, queued: 1, 'at-gateway': 1, completed: 1, expired: 1 })
  })

  test(`${name}: presence: newer wins, older is ignored, a snapshot replaces the gateway's entries, touchGateway moves seenAt`, async (t) => {
    const { store } = await fresh(t)
    const of = async (fleet: string, device: string): Promise<PresenceEntry[]> =>
      (await store.presenceOf(fleet, device)).slice().sort((a, b) => a.gateway < b.gateway ? -1 : 1)
    assert.deepEqual(await of('f1', 'd1'), [])
    await store.setPresence('f1', 'gw1', [{ device: 'd1', connected: true, at: 100 }, { device: 'd2', connected: true, at: 100 }], false, 1000)
    assert.deepEqual(await of('f1', 'd1'), [{ gateway: 'gw1', connected: true, at: 100, seenAt: 1000 }])
    await store.setPresence('f1', 'gw1', [{ device: 'd1', connected: false, at: 50 }], false, 1001)
    assert.deepEqual(await of('f1', 'd1'), [{ gateway: 'gw1', connected: true, at: 100, seenAt: 1001 }], 'an older entry is ignored; the gateway was heard from')
    await store.setPresence('f1', 'gw1', [{ device: 'd1', connected: false, at: 200 }], false, 1002)
    assert.deepEqual(await of('f1', 'd1'), [{ gateway: 'gw1', connected: false, at: 200, seenAt: 1002 }], 'a newer entry wins')
    await store.setPresence('f1', 'gw1', [{ device: 'd1', connected: true, at: 200 }], false, 1003)
    assert.deepEqual(await of('f1', 'd1'), [{ gateway: 'gw1', connected: true, at: 200, seenAt: 1003 }], 'an entry as new as the held one is applied')
    await store.setPresence('f1', 'gw2', [{ device: 'd1', connected: true, at: 150 }], false, 1004)
    await store.setPresence('f2', 'gw3', [{ device: 'd1', connected: true, at: 10 }], false, 1005)
    assert.deepEqual(await of('f1', 'd1'), [{ gateway: 'gw1', connected: true, at: 200, seenAt: 1003 }, { gateway: 'gw2', connected: true, at: 150, seenAt: 1004 }], 'one entry per gateway')
    assert.deepEqual(await of('f2', 'd1'), [{ gateway: 'gw3', connected: true, at: 10, seenAt: 1005 }], 'per fleet')

    // gw1 restarts and lists only d3: d1 and d2 are no longer connected there; gw2's word stands.
    await store.setPresence('f1', 'gw1', [{ device: 'd3', connected: true, at: 300 }], true, 2000)
    const d1 = await of('f1', 'd1')
    assert.deepEqual(d1.map((e) => [e.gateway, e.connected, e.seenAt]), [['gw1', false, 2000], ['gw2', true, 1004]])
    assert.deepEqual((await of('f1', 'd2')).map((e) => [e.gateway, e.connected]), [['gw1', false]])
    assert.deepEqual(await of('f1', 'd3'), [{ gateway: 'gw1', connected: true, at: 300, seenAt: 2000 }])
    await store.setPresence('f1', 'gw1', [], true, 2001)
    assert.deepEqual((await of('f1', 'd3')).map((e) => [e.gateway, e.connected, e.seenAt]), [['gw1', false, 2001]], 'an empty snapshot: nobody connected there')

    await store.touchGateway('gw2', 5000)
    assert.deepEqual(await of('f1', 'd1'), [{ gateway: 'gw1', connected: false, at: d1[0]!.at, seenAt: 2001 }, { gateway: 'gw2', connected: true, at: 150, seenAt: 5000 }], 'touchGateway moves seenAt only')
    await store.touchGateway('gw-new', 6000)
    assert.deepEqual(await of('f1', 'd9'), [], 'touching a gateway reports no device')
  })

  test(`${name}: durability: commands, counters, presence survive close and reopen`, async (t) => {
    const { store, reopen } = await fresh(t)
    await create(store, newCommand('p1', { idempotencyKey: 'pk' }))
    await create(store, newCommand('p2'))
    await store.update(['p2'], (cur) => [moved(cur[0]!, 'at-gateway', T0 + 5, 'gw1')])
    await store.setPresence('f1', 'gw1', [{ device: 'd1', connected: true, at: 7 }], false, 70)
    await store.touchGateway('gw1', 80)
    const before = await feed(store, {}, 10)
    const s2 = await reopen()
    assert.deepStrictEqual(await feed(s2, {}, 10), before)
    assert.deepStrictEqual(await s2.counts(), { ...Object.fromEntries(COMMAND_STATES.map((s) => [s, 0])), queued: 1, 'at-gateway': 1 })
    assert.deepEqual(await s2.presenceOf('f1', 'd1'), [{ gateway: 'gw1', connected: true, at: 7, seenAt: 80 }])
    assert.deepEqual(ids(await s2.openForGateway('gw1', 10)), ['p2'])
    assert.equal((await s2.create(newCommand('p3', { idempotencyKey: 'pk' }))).record.id, 'p1', 'the key survives')
    assert.equal((await create(s2, newCommand('p4'))).n, 3, 'n goes on after a reopen')
  })
}
