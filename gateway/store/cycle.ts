/**
 * One group-commit cycle of the store: everything that arrived since the previous write,
 * written as ONE LevelDB batch together with the partition counters it changes (writer.ts).
 *
 * Sealing: the dedup windows a cycle carries are live objects the intake keeps checking
 * seqs against while the cycle is being written. Their bytes are therefore taken when the
 * cycle is formed (`sealWindows`, the writer's first statement, before any await): a window
 * on disk then claims only seqs whose items are in the same batch or an earlier one. Encoded
 * later, after the writer awaited a read, a window could claim a seq the intake accepted
 * meanwhile and appended to the next cycle; a crash between the two cycles left a window
 * ahead of its items, and the device's resend of that seq was acknowledged as a duplicate
 * of a reading that was never stored.
 */
import type { EvictedRange } from '../../protocol/index.ts'
import type { DedupWindow } from './dedup.ts'
import type { DlqRecord, Quarantined } from './dead-letters.ts'
import { ITEM_OVERHEAD } from './partition.ts'

/** Told once its cycle is durable (null) or failed. An object form avoids a closure per reading. */
export type Waiter = ((err: Error | null) => void) | { settled: (err: Error | null) => void }

/** An item to append: the intake's per-reading entry carries p, s and its wire bytes itself. */
export type Append = { p: number, s: number, raw: Buffer, settled: (err: Error | null) => void }

/** An item leaving the store; `size` counts ITEM_OVERHEAD. */
export type Removal = { p: number, s: number, size: number }

export type DeadItem = Removal & { raw: Buffer, reason: string }

export type Cycle = {
  appends: Append[]
  dlq: DlqRecord[]
  devices: Map<string, DedupWindow>
  deletes: Removal[]
  deadItems: DeadItem[]
  evictedDone: EvictedRange[]
  quarantine: Quarantined[]
  /** dead-letter record ids to delete (purged, or replayed by appends of this same cycle) */
  dlqDrops: number[]
  waiters: Waiter[]
}

export const newCycle = (): Cycle => ({ appends: [], dlq: [], devices: new Map(), deletes: [], deadItems: [], evictedDone: [], quarantine: [], dlqDrops: [], waiters: [] })

export function cycleEmpty (c: Cycle): boolean {
  return c.waiters.length === 0 && c.appends.length === 0 && c.devices.size === 0 && c.deletes.length === 0 &&
    c.deadItems.length === 0 && c.evictedDone.length === 0 && c.quarantine.length === 0 && c.dlqDrops.length === 0
}

/** Someone waits on this cycle (close writes it before closing). */
export function cycleAwaited (c: Cycle): boolean {
  return c.waiters.length > 0 || c.appends.length > 0
}

/**
 * The bytes of the cycle's dedup windows as they are now. Call it where the cycle is formed,
 * before any await of its write (see the header).
 */
export function sealWindows (c: Cycle): Array<[device: string, bytes: Buffer]> {
  const out: Array<[string, Buffer]> = []
  for (const [dev, w] of c.devices) out.push([dev, w.encode()])
  return out
}

export function appendedBytes (c: Cycle): number {
  let n = 0
  for (const a of c.appends) n += a.raw.length + ITEM_OVERHEAD
  return n
}

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
  /** dedup windows evicted from disk by maxDedupDevices (dedup-bound.ts) */
  dedupEvicted: [devices: number]
  writeError: [err: Error]
  cycle: [info: { ops: number, items: number, ms: number }]
  floor: [p: number, floor: number]
}
