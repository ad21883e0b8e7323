/**
 * A set of non-negative integers kept as sorted, disjoint, non-adjacent inclusive ranges.
 * Acknowledged seqs of one boot are almost always one range (PUBACKs come in publish
 * order, [MQTT-4.6.0-2]), so a device that sent for hours costs a few numbers, not an
 * object per reading.
 */
export type Range = [from: number, to: number]

export class RangeSet {
  /** Flat [from0, to0, from1, to1, ...]. */
  private r: number[] = []
  private n = 0

  static from (ranges: readonly Range[]): RangeSet {
    const s = new RangeSet()
    for (const [a, b] of ranges) s.addRange(a, b)
    return s
  }

  get size (): number { return this.n }
  get rangeCount (): number { return this.r.length / 2 }

  add (x: number): void { this.addRange(x, x) }

  addRange (a: number, b: number): void {
    if (b < a) return
    const r = this.r
    const len = r.length
    // fast path: append or extend the last range
    if (len === 0 || a > r[len - 1]! + 1) { r.push(a, b); this.n += b - a + 1; return }
    if (a >= r[len - 2]! && a <= r[len - 1]! + 1) {
      if (b > r[len - 1]!) { this.n += b - r[len - 1]!; r[len - 1] = b }
      return
    }
    // general case: merge every range touching [a-1, b+1]
    let i = 0
    while (i < len && r[i + 1]! < a - 1) i += 2
    let j = i
    let lo = a
    let hi = b
    let removed = 0
    while (j < len && r[j]! <= b + 1) {
      lo = Math.min(lo, r[j]!)
      hi = Math.max(hi, r[j + 1]!)
      removed += r[j + 1]! - r[j]! + 1
      j += 2
    }
    r.splice(i, j - i, lo, hi)
    this.n += hi - lo + 1 - removed
  }

  has (x: number): boolean {
    const r = this.r
    let lo = 0
    let hi = r.length / 2 - 1
    while (lo <= hi) {
      const m = (lo + hi) >> 1
      if (x < r[2 * m]!) hi = m - 1
      else if (x > r[2 * m + 1]!) lo = m + 1
      else return true
    }
    return false
  }

  max (): number | null { return this.r.length ? this.r[this.r.length - 1]! : null }

  ranges (): Range[] {
    const out: Range[] = []
    for (let i = 0; i < this.r.length; i += 2) out.push([this.r[i]!, this.r[i + 1]!])
    return out
  }

  * values (): Generator<number> {
    for (let i = 0; i < this.r.length; i += 2) for (let x = this.r[i]!; x <= this.r[i + 1]!; x++) yield x
  }

  toJSON (): Range[] { return this.ranges() }
}
