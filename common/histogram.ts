/**
 * The latency histogram of the load generators and the device simulator (one
 * implementation: bench/ and device-sim/ may not import each other, both import common/;
 * pure arithmetic, no I/O). A log-bucket latency histogram in the spirit of HdrHistogram: values are integer
 * microseconds, every power-of-two octave is split into 2^SUB_BITS linear sub-buckets, so
 * any recorded value is reported within 1/2^SUB_BITS (0.8 %) of its true value, with a
 * fixed ~3,000-slot array however many samples are recorded. Samples are never stored.
 *
 * Bucket index layout (S = SUB_BITS): values below 2^S map to themselves; a value v with
 * floor(log2 v) = e >= S is shifted right by (e - S) into a mantissa in [2^S, 2^(S+1)) and
 * lands at (e - S) * 2^S + mantissa, so the index space is contiguous and monotonic.
 */
const SUB_BITS = 7
const SUB = 1 << SUB_BITS
const MAX_US = 0x7fffffff // ~35 minutes; larger values are clamped (and counted)
const SLOTS = (31 - SUB_BITS) * SUB + SUB

export type Percentiles = {
  count: number
  minMs: number
  meanMs: number
  p50Ms: number
  p90Ms: number
  p95Ms: number
  p99Ms: number
  p999Ms: number
  maxMs: number
}

export class Histogram {
  readonly counts = new Float64Array(SLOTS)
  count = 0
  sumUs = 0
  minUs = Infinity
  maxUs = 0
  clamped = 0

  static indexOf (us: number): number {
    if (us < SUB) return us
    const e = 31 - Math.clz32(us)
    const shift = e - SUB_BITS
    return shift * SUB + (us >>> shift)
  }

  /** Middle of the bucket's value range (exact below 2^SUB_BITS). */
  static valueOf (index: number): number {
    if (index < SUB) return index
    const shift = Math.floor(index / SUB) - 1
    const mantissa = index - shift * SUB
    if (shift === 0) return mantissa
    return mantissa * 2 ** shift + 2 ** (shift - 1)
  }

  /** Records one latency in milliseconds (fractional). */
  recordMs (ms: number): void {
    let us = Math.round(ms * 1000)
    if (!(us >= 0)) us = 0
    if (us > MAX_US) { us = MAX_US; this.clamped++ }
    this.counts[Histogram.indexOf(us)]!++
    this.count++
    this.sumUs += us
    if (us < this.minUs) this.minUs = us
    if (us > this.maxUs) this.maxUs = us
  }

  /** Value (ms) at quantile q in [0, 1]: the smallest bucket whose cumulative count reaches q. */
  quantileMs (q: number): number {
    if (this.count === 0) return 0
    const rank = Math.max(1, Math.ceil(q * this.count))
    let seen = 0
    for (let i = 0; i < SLOTS; i++) {
      seen += this.counts[i]!
      if (seen >= rank) return Math.min(Math.max(Histogram.valueOf(i), this.minUs), this.maxUs) / 1000
    }
    return this.maxUs / 1000
  }

  merge (other: Histogram): void {
    for (let i = 0; i < SLOTS; i++) this.counts[i]! += other.counts[i]!
    this.count += other.count
    this.sumUs += other.sumUs
    this.clamped += other.clamped
    if (other.minUs < this.minUs) this.minUs = other.minUs
    if (other.maxUs > this.maxUs) this.maxUs = other.maxUs
  }

  reset (): void {
    this.counts.fill(0)
    this.count = 0
    this.sumUs = 0
    this.minUs = Infinity
    this.maxUs = 0
    this.clamped = 0
  }

  summary (): Percentiles {
    const r3 = (x: number): number => Math.round(x * 1000) / 1000
    return {
      count: this.count,
      minMs: this.count ? r3(this.minUs / 1000) : 0,
      meanMs: this.count ? r3(this.sumUs / this.count / 1000) : 0,
      p50Ms: r3(this.quantileMs(0.5)),
      p90Ms: r3(this.quantileMs(0.9)),
      p95Ms: r3(this.quantileMs(0.95)),
      p99Ms: r3(this.quantileMs(0.99)),
      p999Ms: r3(this.quantileMs(0.999)),
      maxMs: r3(this.maxUs / 1000)
    }
  }
}
