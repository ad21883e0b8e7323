/**
 * The LevelDB command store (store.ts): its own database in `<dataDir>/commands`, beside the
 * readings' sink, so the two never share a batch or a lock.
 *
 * Key layout (utf8 keys, parts joined by \x00; numbers are 16 decimal digits, zero-padded,
 * so byte order is numeric order; ids, device ids, fleets and gateway ids never hold \x00):
 *
 *   c  id                         -> the CommandRecord (JSON)
 *   g  gateway device n id        -> ''   open command routed to `gateway` (openForGateway)
 *   o  fleet device n id          -> ''   open command of a device (openForDevice)
 *   x  expiresAt id               -> ''   open command by expiry (dueForExpiry)
 *   u  updatedAt id               -> ''   every command by its last change (the feed, list)
 *   i  fleet key                  -> id   Idempotency-Key of a fleet
 *   n  fleet device               -> the last n given to the device's commands
 *   p  fleet device gateway       -> { connected, at } (a gateway's word on a device)
 *   q  gateway fleet device       -> ''   the devices a gateway has a word on (snapshots)
 *   s  gateway                    -> seenAt (when the ingest last heard from the gateway)
 *   k  state                      -> how many commands are in that state
 *
 * Invariants: the index keys of a record are a function of the record (indexKeys); every
 * write replaces the old record's index keys with the new one's in the same batch, and that
 * batch is written with `sync: true`, so after kill -9 or a power cut the database holds
 * either the old record with its keys or the new one with its keys. One process per
 * directory: LevelDB holds a lock.
 *
 * Group commit (common/group-commit.ts): the read-modify-writes (update, create's n counter
 * and idempotency lookup, presence) run one at a time in this process (one promise chain),
 * but their batches are not written one by one: the ops of every change made while a write
 * is under way go together in the next `sync: true` batch (one fsync for many changes).
 * Until that batch is on disk its values sit in `pending` (key -> value, or null for a
 * delete), and the read-modify-writes read through it, so each sees every change queued
 * before it. Each call resolves only when the batch holding its ops is durable (a call that
 * wrote nothing, e.g. an idempotent repeat, when every change queued before it is), and the
 * public reads (get, list, ...) read the database: committed state only. A failed write
 * fails its callers and those of the group gathering behind it, drops their pending values,
 * and fails a read-modify-write that read them (the `epoch`).
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { GroupCommit } from '../../common/group-commit.ts'
import { StoreError, ValidationError } from '../../protocol/index.ts'
import { COMMAND_STATES, isFinalState, type CommandState } from '../../protocol/commands.ts'
import type { CommandPage, CommandQuery, CommandRecord, CommandStore, NewCommand, PresenceEntry } from './store.ts'

const S = '\x00'
const END = '\xff'
const num = (n: number): string => String(n).padStart(16, '0')
const key = (...parts: (string | number)[]): string => parts.map((p) => typeof p === 'number' ? num(p) : p).join(S)

type BatchOp = { type: 'put', key: string, value: string } | { type: 'del', key: string }

/** One durable write: the ops of every change gathered while the previous write ran. */
type Group = { ops: BatchOp[], waiters: { resolve: () => void, reject: (err: Error) => void }[] }

/** keys kept in the store's read cache (see `cache`), and how many at most */
const cacheable = (k: string): boolean => k[1] === S && (k[0] === 'k' || k[0] === 'n' || k[0] === 'p' || k[0] === 's')
const CACHE_MAX = 200_000

function indexKeys (r: CommandRecord): string[] {
  const keys = [key('u', r.updatedAt, r.id)]
  if (!isFinalState(r.state)) {
    keys.push(key('o', r.fleet, r.device, r.n, r.id), key('x', r.expiresAt, r.id))
    if (r.gateway !== null) keys.push(key('g', r.gateway, r.device, r.n, r.id))
  }
  return keys
}

function encodeCursor (updatedAt: number, id: string): string {
  return Buffer.from(`${updatedAt}:${id}`).toString('base64url')
}
function decodeCursor (c: string): string | null {
  const m = /^(\d{1,16}):(.+)$/.exec(Buffer.from(c, 'base64url').toString('utf8'))
  return m ? key('u', Number(m[1]), m[2]!) : null
}

export class LevelDbCommandStore implements CommandStore {
  readonly kind = 'leveldb'
  private chain: Promise<unknown> = Promise.resolve()
  private closed = false
  /** values of changes not yet durable (null: deleted), with the group that writes them */
  private readonly pending = new Map<string, { value: string | null, group: Group }>()
  /**
   * The last value queued of the small keys a read-modify-write reads one by one (counters
   * `k`, `n`, presence `p`, `s`): read from the database once, then kept here, so a create or
   * a report does not wait for a database read per key inside the serialisation. Only this
   * process writes the database (LevelDB's lock). Cleared on a failed write.
   */
  private readonly cache = new Map<string, string | null>()
  /** moves on each failed write: a change computed over its pending values is refused */
  private epoch = 0
  private readonly gc: GroupCommit<Group>

  private constructor (private readonly db: Level<string, string>) {
    this.gc = new GroupCommit<Group>({
      create: () => ({ ops: [], waiters: [] }),
      empty: (g) => g.ops.length === 0 && g.waiters.length === 0,
      write: async (g) => { if (g.ops.length > 0) await this.write(g.ops) },
      settle: (g, err, behind) => {
        const groups = behind === null ? [g] : [g, behind]
        for (const grp of groups) {
          for (const op of grp.ops) if (this.pending.get(op.key)?.group === grp) this.pending.delete(op.key)
        }
        if (err === null) { for (const w of g.waiters) w.resolve(); return }
        this.epoch++
        this.cache.clear()
        for (const grp of groups) for (const w of grp.waiters) w.reject(err)
      }
    })
  }

  /** Opens (creating) `<dataDir>/commands`. */
  static async open (opts: { dataDir: string }): Promise<LevelDbCommandStore> {
    const dir = join(opts.dataDir, 'commands')
    await mkdir(dir, { recursive: true })
    const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
    try { await db.open() } catch (err) { throw new StoreError(`cannot open the command store ${dir}: ${(err as Error).message}`, { cause: err }) }
    return new LevelDbCommandStore(db)
  }

  /**
   * Runs the read-modify-write `fn` after every one queued before it (the in-process
   * serialisation), adds its ops to the gathering group and resolves with its result once
   * they are durable. The next `fn` runs as soon as this one's ops are queued (it reads them
   * through `pending`), not when they are on disk.
   */
  private mutate<T> (fn: () => Promise<{ ops: BatchOp[], result: T }>): Promise<T> {
    // the chain waits for `fn` and the queueing of its ops (boxed: a promise returned from an
    // async function would be awaited), the caller for the write too
    const step = async (): Promise<{ durable: Promise<T> }> => {
      if (this.closed) throw new StoreError('the command store is closed')
      const epoch = this.epoch
      const { ops, result } = await fn()
      if (epoch !== this.epoch) throw new StoreError('command store write failed: an earlier write this change rests on failed')
      return { durable: this.commit(ops).then(() => result) }
    }
    const run = this.chain.then(step, step)
    this.chain = run.catch(() => {})
    return run.then((box) => box.durable)
  }

  /** Queues `ops` in the gathering group; resolves when they are durable (nothing to write: when every change queued before is). */
  private commit (ops: BatchOp[]): Promise<void> {
    if (ops.length === 0 && this.pending.size === 0 && !this.gc.busy) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const g = this.gc.current
      for (const op of ops) {
        g.ops.push(op)
        const value = op.type === 'put' ? op.value : null
        this.pending.set(op.key, { value, group: g })
        if (cacheable(op.key)) this.cacheSet(op.key, value)
      }
      g.waiters.push({ resolve, reject })
      this.gc.schedule()
    })
  }

  /** A value as the read-modify-writes see it: pending (not yet durable) first, then the database. */
  private async read (k: string): Promise<string | undefined> {
    const p = this.pending.get(k)
    if (p !== undefined) return p.value ?? undefined
    const c = this.cache.get(k)
    if (c !== undefined) return c ?? undefined
    const v = await this.db.get(k) ?? undefined
    // (only the serialised read-modify-writes queue values, and this is one of them: nothing
    // was queued for `k` meanwhile)
    if (cacheable(k)) this.cacheSet(k, v ?? null)
    return v
  }

  private cacheSet (k: string, v: string | null): void {
    if (this.cache.size >= CACHE_MAX && !this.cache.has(k)) this.cache.clear()
    this.cache.set(k, v)
  }

  /** Records as stored (committed state), or with `pending` as the read-modify-writes see them. */
  private async records (ids: readonly string[], withPending = false): Promise<(CommandRecord | null)[]> {
    if (ids.length === 0) return []
    const keys = ids.map((id) => key('c', id))
    // pending values are taken before the database read: the write holding them may finish
    // (and drop them from `pending`) while the read is under way, after the read saw the old
    // state; nothing new is queued meanwhile (only the serialised read-modify-writes queue)
    const queued = withPending ? keys.map((k) => this.pending.get(k)) : []
    const vals: (string | null | undefined)[] = await this.db.getMany(keys)
    queued.forEach((p, i) => { if (p !== undefined) vals[i] = p.value })
    return vals.map((v) => v === undefined || v === null ? null : JSON.parse(v) as CommandRecord)
  }

  private async write (ops: BatchOp[]): Promise<void> {
    try {
      await this.db.batch(ops, { sync: true })
    } catch (err) { throw new StoreError(`command store write failed: ${(err as Error).message}`, { cause: err }) }
  }

  /** The ops that turn `old` (or nothing) into `rec`, counters included. */
  private async replaceOps (old: CommandRecord | null, rec: CommandRecord, counts: Map<CommandState, number>): Promise<BatchOp[]> {
    const ops: BatchOp[] = []
    const newKeys = new Set(indexKeys(rec))
    if (old !== null) for (const k of indexKeys(old)) if (!newKeys.has(k)) ops.push({ type: 'del', key: k })
    for (const k of newKeys) ops.push({ type: 'put', key: k, value: '' })
    ops.push({ type: 'put', key: key('c', rec.id), value: JSON.stringify(rec) })
    // a key taken off a command (or changed) is free again
    if (old?.idempotencyKey !== undefined && old.idempotencyKey !== rec.idempotencyKey) ops.push({ type: 'del', key: key('i', old.fleet, old.idempotencyKey) })
    if (rec.idempotencyKey !== undefined && rec.idempotencyKey !== old?.idempotencyKey) ops.push({ type: 'put', key: key('i', rec.fleet, rec.idempotencyKey), value: rec.id })
    if (old?.state !== rec.state) {
      const bump = async (s: CommandState, d: number): Promise<void> => {
        const cur = counts.get(s) ?? Number(await this.read(key('k', s)) ?? 0)
        counts.set(s, cur + d)
      }
      if (old !== null) await bump(old.state, -1)
      await bump(rec.state, 1)
    }
    return ops
  }

  private static countOps (counts: Map<CommandState, number>): BatchOp[] {
    return [...counts].map(([s, n]) => ({ type: 'put', key: key('k', s), value: String(Math.max(0, n)) }))
  }

  create (c: NewCommand): Promise<{ record: CommandRecord, created: boolean }> {
    return this.mutate<{ record: CommandRecord, created: boolean }>(async () => {
      const ops: BatchOp[] = []
      if (c.idempotencyKey !== undefined) {
        const ik = key('i', c.fleet, c.idempotencyKey)
        const prior = await this.read(ik)
        if (prior !== undefined) {
          const [rec] = await this.records([prior], true)
          if (rec?.idempotencyKey === c.idempotencyKey) return { ops, result: { record: rec, created: false } }
        }
      }
      const nk = key('n', c.fleet, c.device)
      const n = Number(await this.read(nk) ?? 0) + 1
      ops.push({ type: 'put', key: nk, value: String(n) })
      const record: CommandRecord = { ...c, n, updatedAt: c.createdAt }
      const counts = new Map<CommandState, number>()
      ops.push(...await this.replaceOps(null, record, counts), ...LevelDbCommandStore.countOps(counts))
      return { ops, result: { record, created: true } }
    })
  }

  async get (id: string): Promise<CommandRecord | null> {
    return (await this.records([id]))[0] ?? null
  }

  update (ids: readonly string[], change: (current: readonly (CommandRecord | null)[]) => readonly (CommandRecord | null)[]): Promise<(CommandRecord | null)[]> {
    return this.mutate(async () => {
      const current = await this.records(ids, true)
      const next = change(current)
      const ops: BatchOp[] = []
      const counts = new Map<CommandState, number>()
      const out: (CommandRecord | null)[] = []
      for (let i = 0; i < ids.length; i++) {
        const old = current[i] ?? null
        const rec = next[i] ?? null
        if (rec === null || old === null || rec === old) { out.push(old); continue }
        // as stored: the value is JSON, so a field set to undefined is gone (as a read would show)
        const stored = JSON.parse(JSON.stringify(rec)) as CommandRecord
        ops.push(...await this.replaceOps(old, stored, counts))
        out.push(stored)
      }
      return { ops: ops.length > 0 ? [...ops, ...LevelDbCommandStore.countOps(counts)] : [], result: out }
    })
  }

  private async idsUnder (prefix: string, limit: number): Promise<string[]> {
    const ids: string[] = []
    for await (const k of this.db.keys({ gt: prefix, lt: prefix + END, limit })) ids.push(k.slice(k.lastIndexOf(S) + 1))
    return ids
  }

  private async recordsOf (ids: string[]): Promise<CommandRecord[]> {
    return (await this.records(ids)).filter((r): r is CommandRecord => r !== null)
  }

  async openForGateway (gateway: string, limit: number): Promise<CommandRecord[]> {
    return await this.recordsOf(await this.idsUnder(key('g', gateway) + S, limit))
  }

  async openForDevice (fleet: string, device: string): Promise<CommandRecord[]> {
    return await this.recordsOf(await this.idsUnder(key('o', fleet, device) + S, Infinity))
  }

  async dueForExpiry (now: number, limit: number): Promise<CommandRecord[]> {
    const ids: string[] = []
    for await (const k of this.db.keys({ gt: 'x' + S, lte: key('x', now) + S + END, limit })) ids.push(k.slice(k.lastIndexOf(S) + 1))
    return await this.recordsOf(ids)
  }

  async list (q: CommandQuery): Promise<CommandPage> {
    const after = q.cursor === undefined ? null : decodeCursor(q.cursor)
    if (q.cursor !== undefined && after === null) throw new ValidationError('cursor', 'is not one this store gave')
    const since = key('u', q.since ?? 0)
    const gt = after !== null && after > since ? after : null
    const out: CommandRecord[] = []
    let next: string | null = null
    const it = this.db.keys(gt !== null ? { gt, lt: 'u' + S + END } : { gte: since, lt: 'u' + S + END })
    const pending: string[] = []
    const flush = async (): Promise<boolean> => {
      for (const r of await this.recordsOf(pending.splice(0))) {
        if ((q.fleet !== undefined && r.fleet !== q.fleet) || (q.device !== undefined && r.device !== q.device) || (q.state !== undefined && r.state !== q.state)) continue
        out.push(r)
        if (out.length >= q.limit) { next = encodeCursor(r.updatedAt, r.id); return true }
      }
      return false
    }
    for await (const k of it) {
      pending.push(k.slice(k.lastIndexOf(S) + 1))
      if (pending.length >= 256 && await flush()) break
    }
    if (out.length < q.limit && pending.length > 0) await flush()
    return { commands: out, next }
  }

  async counts (): Promise<Record<CommandState, number>> {
    const out = Object.fromEntries(COMMAND_STATES.map((s) => [s, 0])) as Record<CommandState, number>
    const vals = await this.db.getMany(COMMAND_STATES.map((s) => key('k', s)))
    COMMAND_STATES.forEach((s, i) => { out[s] = Number(vals[i] ?? 0) })
    return out
  }

  setPresence (fleet: string, gateway: string, entries: readonly { device: string, connected: boolean, at: number }[], snapshot: boolean, seenAt: number): Promise<void> {
    return this.mutate(async () => {
      const ops: BatchOp[] = [{ type: 'put', key: key('s', gateway), value: String(seenAt) }]
      const listed = new Set<string>()
      for (const e of entries) {
        const pk = key('p', fleet, e.device, gateway)
        const old = await this.read(pk)
        listed.add(`${fleet}${S}${e.device}`)
        if (old !== undefined && (JSON.parse(old) as { at: number }).at > e.at) continue
        ops.push({ type: 'put', key: pk, value: JSON.stringify({ connected: e.connected, at: e.at }) })
        ops.push({ type: 'put', key: key('q', gateway, fleet, e.device), value: '' })
      }
      if (snapshot) {
        const lo = key('q', gateway) + S
        const hi = lo + END
        const qs = new Set<string>()
        // pending keys taken before the scan (their write may finish during it: see `records`)
        const queued = [...this.pending].filter(([k]) => k > lo && k < hi)
        for await (const k of this.db.keys({ gt: lo, lt: hi })) qs.add(k)
        for (const [k, p] of queued) { if (p.value === null) qs.delete(k); else qs.add(k) }
        for (const k of qs) {
          const [, f, d] = k.slice(2).split(S) as [string, string, string]
          if (listed.has(`${f}${S}${d}`)) continue
          const pk = key('p', f, d, gateway)
          const old = await this.read(pk)
          if (old === undefined) continue
          const o = JSON.parse(old) as { connected: boolean, at: number }
          if (o.connected) ops.push({ type: 'put', key: pk, value: JSON.stringify({ connected: false, at: o.at }) })
        }
      }
      return { ops, result: undefined }
    })
  }

  touchGateway (gateway: string, seenAt: number): Promise<void> {
    return this.mutate(async () => ({ ops: [{ type: 'put', key: key('s', gateway), value: String(seenAt) }], result: undefined }))
  }

  async presenceOf (fleet: string, device: string): Promise<PresenceEntry[]> {
    const prefix = key('p', fleet, device) + S
    const rows: { gateway: string, connected: boolean, at: number }[] = []
    for await (const [k, v] of this.db.iterator({ gt: prefix, lt: prefix + END })) {
      const o = JSON.parse(v) as { connected: boolean, at: number }
      rows.push({ gateway: k.slice(prefix.length), connected: o.connected, at: o.at })
    }
    const seen = await this.db.getMany(rows.map((r) => key('s', r.gateway)))
    return rows.map((r, i) => ({ ...r, seenAt: Number(seen[i] ?? 0) }))
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.chain
    await this.gc.close()
    await this.db.close()
  }
}
