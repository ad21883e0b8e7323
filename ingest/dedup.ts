/**
 * Dedup state of one (gateway, epoch, partition), docs/design.md section 7: the recorded floor
 * and the set of stored seqs at or above it, kept as sorted disjoint runs `[from, to]`.
 *
 * Why runs, not one key per seq: a gateway sends a partition's seqs mostly in order, so the
 * set between its floor and its head is one run plus a few holes (items answered retry or
 * rejected). The whole state of a partition is then a few numbers, rewritten in the same
 * LevelDB batch as the items, instead of one extra key per item.
 *
 * Floors rule: the gateway never resends a seq below the floor it reported, so when a batch
 * brings a higher floor everything below it is forgotten, and a later item below the
 * recorded floor (a delayed request, a stale retransmit) is a duplicate. The floor only
 * moves up: a late request carrying an older floor does not lower it.
 */
export type Run = [from: number, to: number]

export class RunSet {
  /** Sorted, disjoint, non-adjacent runs. */
  private runs: Run[]

  constructor (runs: readonly Run[] = []) {
    this.runs = []
    for (const [a, b] of runs) this.addRange(a, b)
  }

  /** Index of the first run whose `to` is >= s. */
  private lowerBound (s: number): number {
    let lo = 0
    let hi = this.runs.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.runs[mid]![1] < s) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  has (s: number): boolean {
    const i = this.lowerBound(s)
    return i < this.runs.length && this.runs[i]![0] <= s
  }

  /** Adds one seq; returns false if it was already there. */
  add (s: number): boolean {
    const last = this.runs[this.runs.length - 1]
    // Fast path: the common case is appending right after the highest run.
    if (last && s === last[1] + 1) { last[1] = s; return true }
    if (!last || s > last[1] + 1) { this.runs.push([s, s]); return true }
    return this.addRange(s, s) === 1
  }

  /** Adds `[from, to]`; returns how many seqs were not in the set before. */
  addRange (from: number, to: number): number {
    if (to < from) return 0
    const i = this.lowerBound(from - 1) // first run that touches or follows from-1
    let added = to - from + 1
    let a = from
    let b = to
    let j = i
    while (j < this.runs.length && this.runs[j]![0] <= to + 1) {
      const [ra, rb] = this.runs[j]!
      const ovA = Math.max(ra, from)
      const ovB = Math.min(rb, to)
      if (ovB >= ovA) added -= ovB - ovA + 1
      a = Math.min(a, ra)
      b = Math.max(b, rb)
      j++
    }
    this.runs.splice(i, j - i, [a, b])
    return added
  }

  /** Forgets every seq below `floor`; returns how many were forgotten. */
  pruneBelow (floor: number): number {
    let removed = 0
    let k = 0
    while (k < this.runs.length && this.runs[k]![1] < floor) { removed += this.runs[k]![1] - this.runs[k]![0] + 1; k++ }
    if (k > 0) this.runs.splice(0, k)
    const first = this.runs[0]
    if (first && first[0] < floor) { removed += floor - first[0]; first[0] = floor }
    return removed
  }

  /** Number of seqs in the set. */
  get size (): number {
    let n = 0
    for (const [a, b] of this.runs) n += b - a + 1
    return n
  }

  get runCount (): number { return this.runs.length }

  toJSON (): Run[] { return this.runs.map(([a, b]) => [a, b]) }
}

export type DedupSnapshot = { floor: number, runs: Run[] }

export type ItemVerdict = 'stored' | 'duplicate'

/** Dedup state of one partition of one gateway epoch. */
export class PartitionDedup {
  floor: number
  readonly seen: RunSet

  constructor (snap: DedupSnapshot = { floor: 0, runs: [] }) {
    this.floor = snap.floor
    this.seen = new RunSet(snap.runs)
  }

  /**
   * Classifies one item and records it if new. Items are checked against the floor recorded
   * before this batch's floors are applied (`raiseFloor` after the items): a gateway never
   * sends a seq below the floor in the same batch, and if a faulty one did, storing it is
   * the safe answer.
   */
  check (s: number): ItemVerdict {
    if (s < this.floor) return 'duplicate'
    return this.seen.add(s) ? 'stored' : 'duplicate'
  }

  /** Raises the floor (never lowers it) and forgets the seqs below it. */
  raiseFloor (floor: number): boolean {
    if (floor <= this.floor) return false
    this.floor = floor
    this.seen.pruneBelow(floor)
    return true
  }

  snapshot (): DedupSnapshot { return { floor: this.floor, runs: this.seen.toJSON() } }
}
