/**
 * One group-commit cycle of the store: everything that arrived since the previous write,
 * written as ONE LevelDB batch together with the partition counters it changes (writer.ts).
 *
 * Sealing: the dedup windows a cycle carries are live objects the intake keeps checking
 * seqs against while the cycle is being written. The windows changed since the previous
 * cycle are therefore handed to a cycle, and their bytes taken, in one step when it is
 * formed (`Cycle.seal`, called through `DedupWindows.handTo` as the writer's first
 * statement, before any await): a window on disk then claims only seqs whose items are in
 * the same batch or an earlier one. Encoded later, after the writer awaited a read, a
 * window could claim a seq the intake accepted meanwhile and appended to the next cycle; a
 * crash between the two cycles left a window ahead of its items, and the device's resend
 * of that seq was acknowledged as a duplicate of a reading that was never stored.
 */
import type { EvictedRange } from '../../protocol/index.ts'
import type { DedupWindow } from './dedup.ts'
import type { DlqRecord, Quarantined } from './dead-letters.ts'
import { itemCost } from './partition.ts'

/** Told once its cycle is durable (null) or failed. An object form avoids a closure per reading. */
export type Waiter = ((err: Error | null) => void) | { settled: (err: Error | null) => void }

/** An item to append: the intake's per-reading entry carries p, s and its wire bytes itself. */
export type Append = { p: number, s: number, raw: Buffer, settled: (err: Error | null) => void }

/** An item leaving the store; `size` is its `itemCost`. */
export type Removal = { p: number, s: number, size: number }

export type DeadItem = Removal & { raw: Buffer, reason: string }

/**
 * One cycle's contents. Its methods add to it and account for what each addition costs
 * (bytes by `itemCost`), and it says what kind of cycle it is (empty, awaited, deletes
 * only). It owns the sealing rule of the header: its dedup windows come in one call,
 * `seal`, which encodes them there and then; a cycle is sealed once.
 */
export class Cycle {
  readonly appends: Append[] = []
  readonly dlq: DlqRecord[] = []
  /** the dedup windows it writes (set by `seal`; each pinned by the writer of its change until written) */
  devices: ReadonlyMap<string, DedupWindow> = new Map()
  readonly deletes: Removal[] = []
  readonly deadItems: DeadItem[] = []
  readonly evictedDone: EvictedRange[] = []
  readonly quarantine: Quarantined[] = []
  /** dead-letter record ids to delete (purged, or replayed by appends of this same cycle) */
  readonly dlqDrops: number[] = []
  readonly waiters: Waiter[] = []
  /** bytes of the appended items, each by `itemCost` (their reservation in the quota) */
  appendedBytes = 0
  private sealed = false

  /** Adds an item; returns what it reserves in the quota (its `itemCost`). */
  append (a: Append): number {
    const size = itemCost(a.raw.length)
    this.appends.push(a)
    this.appendedBytes += size
    return size
  }

  /** An item answered upstream: `rawSize` as read (its `itemCost` is taken here). */
  remove (p: number, s: number, rawSize: number): void {
    this.deletes.push({ p, s, size: itemCost(rawSize) })
  }

  /** An item moved to the dead-letter store. */
  deadItem (p: number, s: number, raw: Buffer, reason: string): void {
    this.deadItems.push({ p, s, size: itemCost(raw.length), raw, reason })
  }

  deadLetter (rec: DlqRecord): void { this.dlq.push(rec) }
  dropDeadLetter (id: number): void { this.dlqDrops.push(id) }
  evictedReported (r: EvictedRange): void { this.evictedDone.push(r) }
  wait (w: Waiter): void { this.waiters.push(w) }

  /**
   * Takes the dedup windows changed since the previous cycle was formed (each pinned once,
   * `pending`) and the unreadable ones to quarantine, and returns the windows' bytes as
   * they are now. Called once, where the cycle is formed, before any await of its write
   * (see the header).
   */
  seal (windows: ReadonlyMap<string, DedupWindow>, quarantined: readonly Quarantined[]): Array<[device: string, bytes: Buffer]> {
    if (this.sealed) throw new Error('a cycle is sealed once (its dedup windows are taken when it is formed)')
    this.devices = windows
    for (const q of quarantined) this.quarantine.push(q)
    const out: Array<[string, Buffer]> = []
    for (const [dev, w] of windows) out.push([dev, w.encode()])
    this.sealed = true
    return out
  }

  /** Items `fullPolicy=drop-oldest` evicts in this cycle (evict.ts). */
  evict (removals: readonly Removal[]): void {
    for (const x of removals) this.deletes.push(x)
  }

  get empty (): boolean {
    return this.waiters.length === 0 && this.appends.length === 0 && this.devices.size === 0 && this.deletes.length === 0 &&
      this.deadItems.length === 0 && this.evictedDone.length === 0 && this.quarantine.length === 0 && this.dlqDrops.length === 0
  }

  /** Someone waits on this cycle (close writes it before closing). */
  get awaited (): boolean {
    return this.waiters.length > 0 || this.appends.length > 0
  }

  /**
   * Only deletes of items answered upstream (`evicted`: ranges this write evicts): such a
   * write needs no fsync, losing it to a power cut only makes the gateway resend items the
   * ingest answers `duplicate` (writer.ts).
   */
  deletesOnly (evicted: number): boolean {
    return this.appends.length === 0 && this.devices.size === 0 && this.dlq.length === 0 && this.deadItems.length === 0 &&
      this.quarantine.length === 0 && this.evictedDone.length === 0 && evicted === 0 && this.dlqDrops.length === 0
  }
}

export const newCycle = (): Cycle => new Cycle()

export const cycleEmpty = (c: Cycle): boolean => c.empty

/** Someone waits on this cycle (close writes it before closing). */
export const cycleAwaited = (c: Cycle): boolean => c.awaited

export function tell (w: Waiter, err: Error | null): void {
  if (typeof w === 'function') w(err)
  else w.settled(err)
}

export type StoreEvents = {
  appended: [partitions: Set<number>]
  space: []
  evicted: [ranges: EvictedRange[], items: number]
  /** dead-letter records dropped by the quota (maxDlqItems/maxDlqBytes) */
  dlqDropped: [records: number]
  /** dedup windows of idle devices deleted from disk (dedupIdleForgetMs) */
  dedupForgotten: [devices: number]
  /** dedup windows evicted from disk by maxDedupDevices (dedup-windows.ts) */
  dedupEvicted: [devices: number]
  writeError: [err: Error]
  cycle: [info: { ops: number, items: number, ms: number }]
  floor: [p: number, floor: number]
}
