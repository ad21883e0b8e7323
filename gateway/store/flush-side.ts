/**
 * The flusher's view of the store: bounded reads from a partition's head, the hold on what
 * is on the wire, the answers (deletes, dead letters) and the floor sent upstream.
 *
 * The floor of p (its head) is the lowest seq the gateway may still send: everything below
 * it is durably gone. An answered item keeps the floor below it until its delete is
 * durable (partition.ts `settling`), so the upstream never forgets dedup state the gateway
 * might still need.
 */
import type { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import { scanCbor, type EvictedRange } from '../../protocol/index.ts'
import { type GroupCommit } from '../../common/index.ts'
import type { StoreConfig } from './config.ts'
import type { Cycle, StoreEvents } from './cycle.ts'
import type { Db } from './db.ts'
import type { Evictions } from './evict.ts'
import { K, seqOfItemKey } from './keys.ts'
import type { Partition } from './partition.ts'
import type { Quota } from './quota.ts'

export type ReadBatch = { p: number, seqs: number[], raws: Buffer[], bytes: number }

type Deps = {
  config: StoreConfig
  db: Db
  parts: Partition[]
  quota: Quota
  evictions: Evictions
  gc: GroupCommit<Cycle>
  events: EventEmitter<StoreEvents>
  log: Logger
}

export class FlushSide {
  constructor (private readonly d: Deps) {}

  /**
   * Reads up to maxItems/maxBytes items of partition p from its head and marks them held
   * by the flusher until `release(p)`. Unreadable items are moved to the dead-letter store.
   */
  async readBatch (p: number, maxItems: number, maxBytes: number): Promise<ReadBatch> {
    const { gc, evictions } = this.d
    const part = this.d.parts[p]!
    while (evictions.planning.has(p) && gc.inProgress) await gc.inProgress
    part.beginRead()
    // taken before the iterator: an empty read then proves nothing below it is held
    const committedNext = part.committedNext
    const seqs: number[] = []
    const raws: Buffer[] = []
    let bytes = 0
    let firstHeld = -1
    try {
      // one native round trip for the whole batch (bounded by maxItems): under load every
      // extra iterator step waits a full event-loop turn behind the intake
      // items whose delete is still queued are read too (and skipped): ask for that many more
      const range = { gte: K.item(p, part.head), lt: K.itemEnd(p), limit: maxItems + part.settlingCount, highWaterMarkBytes: Math.max(maxBytes * 2, 64 * 1024) }
      const entries: Array<[string, Buffer]> = await this.d.db.iterator(range).all()
      if (entries.length) firstHeld = seqOfItemKey(entries[0]![0])
      for (const [k, v] of entries) {
        const s = seqOfItemKey(k)
        if (part.isSettling(s)) continue
        if (seqs.length >= maxItems) break
        try {
          scanCbor(v, { maxDepth: 4 })
        } catch (err) {
          this.d.log.error({ partition: p, seq: s, err }, 'buffered item unreadable; moved to the dead-letter store')
          gc.current.deadItem(p, s, v, `unreadable item in store: ${(err as Error).message}`)
          part.markSettling(s)
          gc.schedule()
          continue
        }
        if (raws.length > 0 && bytes + v.length > maxBytes) break
        seqs.push(s)
        raws.push(v)
        bytes += v.length
      }
    } finally {
      part.endRead(seqs.length ? seqs[seqs.length - 1]! : null)
    }
    // the floor: the first item still on disk (everything below it is durably gone), even
    // when its delete is queued; with nothing on disk, all that was committed before the
    // read. Never below the head: deletes that landed during the read may have moved it.
    if (part.raiseHead(firstHeld >= 0 ? firstHeld : committedNext)) this.d.events.emit('floor', p, part.head)
    return { p, seqs, raws, bytes }
  }

  release (p: number): void {
    this.d.parts[p]!.release()
    // drop-oldest: items that were on the wire when a write wanted to evict them may go now
    if (this.d.config.fullPolicy === 'drop-oldest' && this.d.quota.over) {
      this.d.evictions.wanted = true
      this.d.gc.schedule()
    }
  }

  /** Queues the upstream's answers for p: deletes and dead letters; resolves once durable. */
  settle (p: number, deletes: { s: number, size: number }[], dead: { s: number, raw: Buffer, reason: string }[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const part = this.d.parts[p]!
      const c = this.d.gc.current
      for (const x of deletes) { c.remove(p, x.s, x.size); part.markSettling(x.s) }
      for (const x of dead) { c.deadItem(p, x.s, x.raw, x.reason); part.markSettling(x.s) }
      c.wait((err) => err ? reject(err) : resolve())
      this.d.gc.schedule()
    })
  }

  /** Forgets evicted ranges the upstream acknowledged; resolves once durable. */
  evictedReported (ranges: EvictedRange[]): Promise<void> {
    if (ranges.length === 0) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const c = this.d.gc.current
      for (const r of this.d.evictions.unchanged(ranges)) c.evictedReported(r)
      c.wait((err) => err ? reject(err) : resolve())
      this.d.gc.schedule()
    })
  }

  /** The oldest buffered item of p (for its age), or null. */
  async oldest (p: number): Promise<Buffer | null> {
    const r = await this.d.db.values({ gte: K.item(p, this.d.parts[p]!.head), lt: K.itemEnd(p), limit: 1 }).all()
    return r[0] ?? null
  }
}
