/**
 * The store's side of group commit (common/group-commit.ts runs the cycles): turns one
 * cycle into ONE LevelDB batch (items, deletes, dead letters, dedup windows, quarantine,
 * evicted ranges and the counters of every partition it touches), writes it with
 * `sync: true` under `durability=power`, and only then applies it to memory and tells the
 * waiters. A failed batch fails its waiters and the cycle gathering behind it, whose dedup
 * decisions may rest on the failed one: nothing is acknowledged that is not stored.
 */
import type { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import { encodeCbor, StoreError, type EvictedRange } from '../../protocol/index.ts'
import { type GroupWriter } from '../../common/index.ts'
import type { StoreConfig } from './config.ts'
import { newCycle, tell, type Cycle, type StoreEvents } from './cycle.ts'
import type { Db } from './db.ts'
import type { DeadLetterStore, DlqPlan, DlqRecord, DlqStaged } from './dead-letters.ts'
import type { Evictions } from './evict.ts'
import { K } from './keys.ts'
import { itemCost, type Partition } from './partition.ts'
import type { Quota } from './quota.ts'
import type { Reopener } from './reopen.ts'
import type { DedupWindows } from './dedup-windows.ts'

type Deps = {
  config: StoreConfig
  db: Db
  parts: Partition[]
  quota: Quota
  deadLetters: DeadLetterStore
  evictions: Evictions
  reopener: Reopener
  dedup: DedupWindows
  events: EventEmitter<StoreEvents>
  log: Logger
}

const NO_RECORDS: DlqPlan = { encoded: [], dropOld: [], dropNew: 0, removed: [] }

/** What a written cycle changes in memory, kept from `write` to `settle`. */
type Result = { t0: number, evictedRanges: EvictedRange[], evictedCount: number, dlqDropped: number, dlqDroppedIds: [number, number] | null, dedupForgotten: number, dedupEvicted: number }

export class CycleWriter implements GroupWriter<Cycle> {
  private readonly results = new WeakMap<Cycle, Result>()

  constructor (private readonly d: Deps) {}

  create = newCycle

  empty = (c: Cycle): boolean => c.empty && !this.d.evictions.wanted && !this.d.dedup.wanted

  recover = (): Promise<boolean> => this.d.reopener.recover()

  /** Commit interval: only the mode that fsyncs gathers (docs/raspberry-pi.md). */
  intervalMs = (): number => this.d.config.durability === 'power' ? this.d.config.commitIntervalMs : 0

  write = async (c: Cycle): Promise<void> => {
    const { config, db, parts, quota, deadLetters, evictions, dedup } = this.d
    // before the first await: the intake goes on checking seqs against these window objects
    // while this cycle is written, and those seqs' items belong to the next cycle (cycle.ts)
    const windows = dedup.handTo(c)
    const t0 = performance.now()
    this.d.evictions.wanted = false
    const appendedItems = c.appends.length
    const appended = c.appendedBytes
    let evictedRanges: EvictedRange[] = []
    let evictedCount = 0
    let dedupForgotten = 0
    let dedupEvicted = 0
    let dlqResult: DlqStaged = { nextId: 0, count: 0, bytes: 0, quarantineNext: 0, dropped: 0, droppedIds: null }
    const delta = new Map<number, { items: number, bytes: number }>()
    const d = (p: number): { items: number, bytes: number } => {
      let x = delta.get(p)
      if (!x) { x = { items: 0, bytes: 0 }; delta.set(p, x) }
      return x
    }
    try {
      if (config.fullPolicy === 'drop-oldest') {
        const ev = await evictions.plan(c, quota.items + appendedItems, quota.bytes + appended, config)
        evictedRanges = ev.ranges
        evictedCount = ev.deletes.length
        c.evict(ev.deletes)
      }
      const b = db.batch()
      for (const a of c.appends) {
        b.put(K.item(a.p, a.s), a.raw)
        const x = d(a.p); x.items++; x.bytes += itemCost(a.raw.length)
      }
      for (const x of c.deletes) {
        b.del(K.item(x.p, x.s))
        const y = d(x.p); y.items--; y.bytes -= x.size
      }
      const records: DlqRecord[] = c.dlq
      for (const x of c.deadItems) {
        b.del(K.item(x.p, x.s))
        const y = d(x.p); y.items--; y.bytes -= x.size
        records.push({ kind: 'item', reason: x.reason, at: Date.now(), raw: x.raw, p: x.p, s: x.s })
      }
      // deletes of dedup windows (idle ones; evictions of maxDedupDevices to make room for
      // this cycle's new windows) before this cycle's windows are put: a window saved in the
      // cycle that quarantines its unreadable predecessor was deleted with it
      const disk = dedup.plan(c, dedup.sweepDue ? await dedup.sweepChunk(c) : [])
      for (const k of disk.deletes) b.del(k)
      const dl = deadLetters.stage(b, records.length || c.dlqDrops.length ? await deadLetters.plan(records, c.dlqDrops) : NO_RECORDS, c.quarantine)
      for (const [dev, bytes] of windows) if (disk.unwritten === null || !disk.unwritten.has(dev)) b.put(K.dedup(dev), bytes)
      for (const r of evictions.merge(evictedRanges)) b.put(K.evicted(r[0], r[1]), encodeCbor(r[2]))
      for (const r of c.evictedDone) b.del(K.evicted(r[0], r[1]))
      for (const [p, x] of delta) {
        const s = parts[p]!
        b.put(K.counter(p), encodeCbor([s.next, s.items + x.items, s.bytes + x.bytes]))
      }
      // A cycle that only deletes items answered upstream needs no fsync: losing it to a
      // power cut only makes the gateway resend items the ingest answers `duplicate`, and the
      // next synced cycle makes it durable anyway (LevelDB's log is written in order).
      const onlyDeletes = c.deletesOnly(evictedRanges.length)
      await b.write({ sync: config.durability === 'power' && !onlyDeletes })
      // durable: apply to memory
      for (const [p, x] of delta) {
        parts[p]!.applyDelta(x.items, x.bytes)
        quota.apply(x.items, x.bytes)
      }
      for (const a of c.appends) parts[a.p]!.committed(a.s)
      for (const x of c.deletes) parts[x.p]!.removed(x.s)
      for (const x of c.deadItems) parts[x.p]!.removed(x.s)
      deadLetters.committed(dl)
      dlqResult = dl
      dedupForgotten = disk.forgotten
      dedup.committed(c, disk)
      dedupEvicted = disk.evicted
      evictions.forgotten(c.evictedDone)
    } catch (e) {
      // the evicted ranges were merged into memory before the write: take them back
      evictions.rollback(evictedRanges)
      throw e instanceof StoreError ? e : new StoreError(`store write failed: ${(e as Error).message}`, { cause: e })
    } finally {
      this.release(c)
      evictions.endWrite()
    }
    this.results.set(c, { t0, evictedRanges, evictedCount, dlqDropped: dlqResult.dropped, dlqDroppedIds: dlqResult.droppedIds, dedupForgotten, dedupEvicted })
  }

  /** The cycle is written or failed: its deletes are no longer pending, its reservation ends. */
  private release (c: Cycle): void {
    for (const x of c.deletes) this.d.parts[x.p]!.settled(x.s)
    for (const x of c.deadItems) this.d.parts[x.p]!.settled(x.s)
    this.d.quota.unreserve(c.appends.length, c.appendedBytes)
    for (const w of c.devices.values()) w.pending--
  }

  settle = (c: Cycle, err: Error | null, behind: Cycle | null): void => {
    const { events, parts } = this.d
    if (err) {
      // the cycle gathering behind this one may hold dedup decisions that relied on it
      if (behind) this.release(behind)
      this.d.dedup.writeFailed()
      const failedBehind = behind ? behind.waiters.length + behind.appends.length : 0
      this.d.log.error({ err, items: c.appends.length, failedBehind }, 'store write failed; nothing in it is acknowledged')
      this.d.reopener.failed(err)
      events.emit('writeError', err)
      for (const a of c.appends) a.settled(err)
      for (const w of c.waiters) tell(w, err)
      if (behind) {
        for (const a of behind.appends) a.settled(err)
        for (const w of behind.waiters) tell(w, err)
      }
      // the failed cycles' reservations ended: readings waiting for room (fullPolicy=block)
      // may go now. Without this, readings blocked behind a failed write waited for a delete
      // that an empty buffer never makes, and the gateway acknowledged nothing more
      if (c.appends.length || behind?.appends.length) events.emit('space')
      return
    }
    const r = this.results.get(c)!
    this.d.reopener.succeeded()
    const appendedItems = c.appends.length
    events.emit('cycle', { ops: c.waiters.length + appendedItems, items: appendedItems, ms: performance.now() - r.t0 })
    if (r.evictedCount) events.emit('evicted', r.evictedRanges, r.evictedCount)
    if (r.dedupForgotten) events.emit('dedupForgotten', r.dedupForgotten)
    if (r.dedupEvicted) events.emit('dedupEvicted', r.dedupEvicted)
    if (r.dlqDropped) {
      const { maxDlqItems, maxDlqBytes } = this.d.config
      this.d.log.warn({ records: r.dlqDropped, ids: r.dlqDroppedIds, maxDlqItems, maxDlqBytes }, 'dead-letter store full: dropped the oldest records')
      events.emit('dlqDropped', r.dlqDropped)
    }
    // appends and waiters were queued in arrival order within each list; the intake orders
    // per client itself, so the two lists need no interleaving
    for (const a of c.appends) a.settled(null)
    for (const w of c.waiters) tell(w, null)
    if (appendedItems) {
      const ps = new Set<number>()
      for (const a of c.appends) ps.add(a.p)
      events.emit('appended', ps)
    }
    if (c.deletes.length || c.deadItems.length) {
      events.emit('space')
      for (const p of new Set([...c.deletes.map((x) => x.p), ...c.deadItems.map((x) => x.p)])) events.emit('floor', p, parts[p]!.head)
    }
  }
}
