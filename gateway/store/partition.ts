/**
 * One partition of the store in memory: its counters, its head (the floor sent upstream)
 * and what the flusher does with it. Only this class changes that state; the store, the
 * writer and the reader call its methods.
 *
 * The flusher's hold on a partition is a named state:
 *   idle     nothing read; eviction may take any item from the head
 *   reading  a read is under way: its snapshot may hold any item, so nothing is evicted and
 *            deletes that land meanwhile are remembered until the read ends
 *   holding  a batch up to `heldTo` is on the wire: those items are not evicted
 *
 * `settling` holds seqs whose delete or dead-lettering is queued but not yet durable: the
 * flusher has its answer for them, so reads skip them and eviction leaves them alone,
 * while the head stays below them until the write lands.
 */

/** Bytes an item's key and bookkeeping cost against `maxBufferBytes` on top of its value. */
const ITEM_OVERHEAD = 24

/**
 * What one item of `valueBytes` costs against `maxBufferBytes`: the one measure the quota,
 * the cycle, the writer, recovery, eviction, the flusher's settling and `gateway check`
 * count in, and the one the intake asks `hasRoom` in. Nothing else adds the overhead.
 */
export function itemCost (valueBytes: number): number {
  return valueBytes + ITEM_OVERHEAD
}

export type Hold = { state: 'idle' } | { state: 'reading' } | { state: 'holding', heldTo: number }

const IDLE: Hold = { state: 'idle' }
const READING: Hold = { state: 'reading' }

export class Partition {
  /** the next seq to allocate (allocated seqs are never reused, written or not) */
  next: number
  /** one past the highest seq written durably */
  committedNext: number
  /** durable item count and bytes (each item counted by `itemCost`) */
  items: number
  bytes: number
  /** lowest seq that may still be held: reads start here, the upstream floor */
  head: number
  private hold: Hold = IDLE
  private readonly settling = new Set<number>()
  /** settling seqs written while a read was under way: its snapshot still has them */
  private readonly forgetAfterRead: number[] = []

  constructor (readonly p: number, c: { next: number, items: number, bytes: number, head: number }) {
    this.next = c.next
    this.committedNext = c.next
    this.items = c.items
    this.bytes = c.bytes
    this.head = c.head
  }

  get holdState (): Hold['state'] { return this.hold.state }

  /** True while the flusher reads or holds a batch of this partition. */
  get inFlight (): boolean { return this.hold.state !== 'idle' }

  /** True when seq s may be on the wire (the eviction must leave it). */
  holds (s: number): boolean {
    if (this.hold.state === 'reading') return true
    return this.hold.state === 'holding' && s <= this.hold.heldTo
  }

  /** The first seq eviction may consider, or null while a read is under way. */
  evictableFrom (): number | null {
    if (this.hold.state === 'reading') return null
    return this.hold.state === 'holding' ? Math.max(this.head, this.hold.heldTo + 1) : this.head
  }

  beginRead (): void {
    this.hold = READING
  }

  /** The read ended holding seqs up to `lastSeq` (null: it holds nothing). */
  endRead (lastSeq: number | null): void {
    this.hold = lastSeq === null ? IDLE : { state: 'holding', heldTo: lastSeq }
    for (const s of this.forgetAfterRead) this.settling.delete(s)
    this.forgetAfterRead.length = 0
  }

  release (): void {
    this.hold = IDLE
  }

  // ---- answered items whose delete is queued ----------------------------------------

  markSettling (s: number): void { this.settling.add(s) }
  isSettling (s: number): boolean { return this.settling.has(s) }
  get settlingCount (): number { return this.settling.size }

  /** The delete of s is written (or failed, and s will be read again). */
  settled (s: number): void {
    // a read under way may have taken its snapshot before this write: it must still skip s
    if (this.hold.state === 'reading') this.forgetAfterRead.push(s)
    else this.settling.delete(s)
  }

  // ---- counters -----------------------------------------------------------------------

  allocate (): number { return this.next++ }

  /** Applies a durable write's change of items/bytes. */
  applyDelta (items: number, bytes: number): void {
    this.items += items
    this.bytes += bytes
  }

  /** An item up to s is durable. */
  committed (s: number): void {
    if (s >= this.committedNext) this.committedNext = s + 1
  }

  /** The item at s left the store: the head moves past it when it was the lowest. */
  removed (s: number): void {
    if (s === this.head) this.head = s + 1
    // deletes land out of order (retries, bisected halves, dead letters), so the head alone
    // can stay below an emptied partition; with nothing on disk, everything committed is
    // gone. Otherwise the floor would wait for the next read, which an idle partition never
    // makes, and a delivered-mode PUBACK waiting on the floor would never come.
    if (this.items === 0 && this.committedNext > this.head) this.head = this.committedNext
  }

  /** A read found the first item still on disk at `head` (or none below it): raise the floor. */
  raiseHead (head: number): boolean {
    if (head <= this.head) return false
    this.head = head
    return true
  }

  /** Counters re-read from disk after a reopen (a failed batch may have landed). */
  reload (next: number, items: number, bytes: number): void {
    this.items = items
    this.bytes = bytes
    this.next = Math.max(this.next, next)
    this.committedNext = Math.max(this.committedNext, next)
  }
}
