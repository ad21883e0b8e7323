/**
 * `fullPolicy=drop-oldest`: when a cycle would leave the buffer over its quota, the writer
 * evicts the oldest items of the deepest partitions in the same batch, and records the
 * evicted ranges (`e!` keys) until the upstream acknowledged them (`evicted` in a batch):
 * data loss made explicit. Items the flusher holds (on the wire) or whose delete is queued
 * are never evicted.
 */
import type { Logger } from 'pino'
import type { EvictedRange } from '../../protocol/index.ts'
import type { Cycle, Removal } from './cycle.ts'
import type { Db } from './db.ts'
import { K, seqOfItemKey } from './keys.ts'
import { itemCost, type Partition } from './partition.ts'

export type EvictionPlan = { deletes: Removal[], ranges: EvictedRange[] }

export class Evictions {
  /** ranges evicted and not yet acknowledged upstream */
  private ranges: EvictedRange[]
  /** partitions the plan being written reads from: the flusher waits before reading them */
  readonly planning = new Set<number>()
  /** the flusher released items eviction had to skip: evict on the next cycle */
  wanted = false
  /** ranges the write under way extended in place, with their ends before: `rollback` restores them */
  private extended: Array<[range: EvictedRange, end: number]> = []

  constructor (recovered: EvictedRange[], private readonly db: Db, private readonly parts: Partition[], private readonly log: Logger) {
    this.ranges = recovered
  }

  get count (): number { return this.ranges.length }

  /**
   * Picks items to evict so the buffer fits the quota after cycle `c`, from the deepest
   * partition's oldest end. `items`/`bytes`: the totals after the cycle without eviction.
   */
  async plan (c: Cycle, items: number, bytes: number, max: { maxBufferItems: number, maxBufferBytes: number }): Promise<EvictionPlan> {
    for (const x of c.deletes) bytes -= x.size
    for (const x of c.deadItems) bytes -= x.size
    items -= c.deletes.length + c.deadItems.length
    const over = (): boolean => items > max.maxBufferItems || bytes > max.maxBufferBytes
    const got: Removal[] = []
    const depth = this.parts.map((x) => x.items)
    const cursor = new Map<number, number>()
    const exhausted = new Set<number>()
    const n = this.parts.length
    while (over() && exhausted.size < n) {
      let best = -1
      for (let p = 0; p < n; p++) {
        if (!exhausted.has(p) && (best < 0 || depth[p]! > depth[best]!)) best = p
      }
      const part = this.parts[best]!
      const from = cursor.get(best) ?? part.evictableFrom()
      if (from === null || depth[best] === 0) { exhausted.add(best); continue }
      this.planning.add(best)
      let taken = 0
      let last = from
      const limit = Math.min(Math.max(items - max.maxBufferItems, 0) + 64, 4096)
      for await (const [k, v] of this.db.iterator({ gte: K.item(best, from), lt: K.itemEnd(best), limit })) {
        const size = itemCost(v.length)
        last = seqOfItemKey(k)
        if (part.isSettling(last)) continue // answered upstream, its delete is queued
        got.push({ p: best, s: last, size })
        items--; bytes -= size; depth[best]!--; taken++
        if (!over()) break
      }
      if (taken === 0) exhausted.add(best)
      else cursor.set(best, last + 1)
    }
    // the flusher may have started a read meanwhile: never evict what it holds (it is on the wire)
    const deletes: Removal[] = []
    const ranges: EvictedRange[] = []
    for (const g of got) {
      const part = this.parts[g.p]!
      if (part.holds(g.s) || part.isSettling(g.s)) continue
      deletes.push(g)
      const r = ranges.findLast((x) => x[0] === g.p)
      if (r && r[2] + 1 === g.s) r[2] = g.s
      else ranges.push([g.p, g.s, g.s])
    }
    if (deletes.length) this.log.warn({ items: deletes.length, ranges }, 'buffer full: evicted the oldest items (fullPolicy=drop-oldest)')
    return { deletes, ranges }
  }

  /**
   * Adds new ranges to memory (before the write), extending a range that ends right
   * before; returns the ranges to (re)write. `rollback` takes them back if the write fails.
   */
  merge (ranges: EvictedRange[]): EvictedRange[] {
    const out: EvictedRange[] = []
    this.extended = []
    for (const r of ranges) {
      const prev = this.ranges.findLast((e) => e[0] === r[0])
      if (prev && prev[2] + 1 === r[1]) {
        this.extended.push([prev, prev[2]])
        prev[2] = r[2]
        out.push(prev)
      } else {
        this.ranges.push(r)
        out.push(r)
      }
    }
    return out
  }

  /**
   * The write failed: takes back the new ranges and the extensions of existing ones.
   * An extension left in place was written by the next eviction as part of its range,
   * so the range on disk covered items the failed write never deleted: reported upstream
   * as evicted, and sent as well.
   */
  rollback (ranges: EvictedRange[]): void {
    for (const [r, end] of this.extended.reverse()) r[2] = end
    this.extended = []
    if (ranges.length) this.ranges = this.ranges.filter((r) => !ranges.includes(r))
  }

  /** The write ended (after `rollback` when it failed): nothing left to take back. */
  endWrite (): void {
    this.planning.clear()
    this.extended = []
  }

  /** Ranges not yet acknowledged upstream (at most `max`), copies. */
  pending (max: number): EvictedRange[] {
    return this.ranges.slice(0, max).map((r) => [...r] as EvictedRange)
  }

  /** Of the ranges the upstream acknowledged, those unchanged since (a range may have grown). */
  unchanged (reported: EvictedRange[]): EvictedRange[] {
    const out: EvictedRange[] = []
    for (const r of reported) {
      const cur = this.ranges.find((e) => e[0] === r[0] && e[1] === r[1])
      if (cur && cur[2] === r[2]) out.push(cur)
    }
    return out
  }

  /** The acknowledged ranges' deletes are durable. */
  forgotten (done: EvictedRange[]): void {
    if (done.length === 0) return
    const keys = new Set(done.map((r) => `${r[0]}:${r[1]}`))
    this.ranges = this.ranges.filter((r) => !keys.has(`${r[0]}:${r[1]}`))
  }
}
