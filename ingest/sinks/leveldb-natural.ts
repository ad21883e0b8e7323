/**
 * The leveldb sink's natural-key window (layout 4). A reading with a device seq is also
 * identified by (fleet, device, boot, seq). Its reading key already sorts by device, boot
 * and seq (leveldb-keys.ts), and its value names its fleet, so the reading itself is the
 * index: no second key per reading. What this file keeps in memory is what makes most
 * lookups unnecessary and the rest correct:
 *
 * - A head per (device, boot): `max`, a seq at or above every seq of that device and boot
 *   stored on disk or applied since (any fleet). It is loaded once from disk (the last
 *   seq'd reading key of the range) and raised by every apply. A device's new readings come
 *   with growing seqs, so an item whose seq is above `max` proves by its key that no copy of
 *   it exists: no disk read. Only an item at or below `max` (a failover resend, a
 *   retransmit) is looked up on disk, before the apply step, by its (device, boot, seq) range.
 * - Pending copies per head: the copies applied by writes not yet durable, and those whose
 *   write completed after a disk read still in progress began (that read may have missed
 *   them), each with the copy itself so that a later copy's content can be compared
 *   (types.ts `sameContent`). An entry is a small object on its head (seq as a number, no
 *   60-character key string); a FIFO in apply order lets it go once every read in progress
 *   began after its completion (`beginRead` registers the completion count a read starts
 *   from), as write groups complete in apply order.
 *
 * Bounded: at most `maxHeads` heads stay in memory; a head with pending copies, or used by a
 * request between its load and its apply, is never forgotten, any other may be (it is
 * loaded again when needed). After a failed write everything is forgotten (`drop`): the
 * requests in progress load again (leveldb.ts reloads on the dedup cache's generation).
 * Guarded by test/unit/ingest-natural-window.test.ts and test/integration/sink-contract.ts.
 */
import type { Boot } from '../../protocol/index.ts'
import type { ReadingCopy } from './types.ts'

export type NaturalRead = { from: number }

export type Pending = { seq: number, fleet: string, copy: ReadingCopy, n: number, head: Head }

export class Head {
  /** Pending copies, in apply order. */
  readonly pending: Pending[] = []
  /** Requests holding this head between their load and their apply. */
  users = 0
  constructor (public max: number) {}

  /** The pending copy of (seq, fleet), newest first. */
  find (seq: number, fleet: string): ReadingCopy | undefined {
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const e = this.pending[i]!
      if (e.seq === seq && e.fleet === fleet) return e.copy
    }
    return undefined
  }
}

/** No reading with a seq for this device and boot. */
export const NO_SEQ = -1

export class NaturalKeyWindow {
  /** device -> boot (the Boot value itself: 1 and '1' are two keys, null is one) -> head */
  private readonly heads = new Map<string, Map<Boot | null, Head>>()
  private count = 0
  private readonly loading = new Map<string, Promise<Head>>()
  private window: Pending[] = []
  private start = 0
  private completions = 0
  private readonly readers = new Set<NaturalRead>()
  /** Bumped by `drop`: a head load that began before it does not install what it read. */
  private generation = 0

  constructor (private readonly maxHeads = 200_000) {}

  get size (): number { return this.count }

  /** Copies held in the window (not durable, or kept for a read in progress). */
  get pendingCopies (): number { return this.window.length - this.start }

  head (device: string, boot: Boot | null): Head | undefined { return this.heads.get(device)?.get(boot) }

  /**
   * The head of (device, boot), loaded with `readMax` (the highest seq on disk) unless it is
   * in memory or being loaded. Call between `beginRead` and `endRead`.
   */
  async load (device: string, boot: Boot | null, readMax: () => Promise<number>): Promise<Head> {
    const have = this.head(device, boot)
    if (have) return have
    const lk = `${device}\u0000${typeof boot}\u0000${String(boot)}`
    let p = this.loading.get(lk)
    if (!p) {
      const gen = this.generation
      p = (async () => {
        const max = await readMax()
        const now = this.head(device, boot)
        if (now) return now
        const h = new Head(max)
        if (gen !== this.generation) return h // read before a drop: used once, not installed
        let m = this.heads.get(device)
        if (!m) this.heads.set(device, m = new Map())
        m.set(boot, h)
        this.count++
        return h
      })().finally(() => { this.loading.delete(lk) })
      this.loading.set(lk, p)
    }
    return p
  }

  /** A disk read of readings begins: copies completed from now on are kept until `endRead`. */
  beginRead (r: NaturalRead): void {
    r.from = this.completions
    this.readers.add(r)
  }

  endRead (r: NaturalRead): void {
    this.readers.delete(r)
    this.prune()
    if (this.count > this.maxHeads) this.evict()
  }

  /** A copy applied by a write not yet durable; raises the head. */
  applied (head: Head, seq: number, fleet: string, copy: ReadingCopy): Pending {
    const e: Pending = { seq, fleet, copy, n: 0, head }
    head.pending.push(e)
    if (seq > head.max) head.max = seq
    this.window.push(e)
    return e
  }

  /** The write holding `entries` is durable. */
  completed (entries: readonly Pending[]): void {
    const n = ++this.completions
    for (const e of entries) e.n = n
    this.prune()
  }

  /** After a failed write: forgets every head and copy (disk is the truth; requests load again). */
  drop (): void {
    this.generation++
    this.heads.clear()
    this.loading.clear()
    this.count = 0
    this.window = []
    this.start = 0
  }

  /** Forgets the copies that every read in progress would find on disk. */
  private prune (): void {
    let oldest = this.completions
    for (const r of this.readers) oldest = Math.min(oldest, r.from)
    const w = this.window
    while (this.start < w.length) {
      const e = w[this.start]!
      if (e.n === 0 || e.n > oldest) break // completions come in apply order
      const pend = e.head.pending
      const i = pend[0] === e ? 0 : pend.indexOf(e)
      if (i >= 0) pend.splice(i, 1)
      this.start++
    }
    if (this.start > 4096 && this.start * 2 > w.length) { this.window = w.slice(this.start); this.start = 0 }
  }

  /** Forgets heads nobody uses until a tenth below the bound (the oldest loaded first). */
  private evict (): void {
    const target = Math.floor(this.maxHeads * 0.9)
    for (const [device, m] of this.heads) {
      for (const [boot, h] of m) {
        if (this.count <= target) return
        if (h.users > 0 || h.pending.length > 0) continue
        m.delete(boot)
        this.count--
      }
      if (m.size === 0) this.heads.delete(device)
    }
  }
}
