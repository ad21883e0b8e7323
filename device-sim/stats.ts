/** Counters and a log-bucket histogram shared by every device of a simulation. */

/** Histogram of non-negative values (ms) in ~4% wide log buckets; O(1) memory. */
export class Histogram {
  private static readonly PER_OCTAVE = 16
  private readonly buckets = new Float64Array(16 * 32 + 1)
  count = 0
  sum = 0
  max = 0

  record (v: number): void {
    if (!(v >= 0)) v = 0
    this.count++
    this.sum += v
    if (v > this.max) this.max = v
    this.buckets[this.index(v)]!++
  }

  private index (v: number): number {
    if (v < 1) return 0
    return Math.min(this.buckets.length - 1, 1 + Math.floor(Math.log2(v) * Histogram.PER_OCTAVE))
  }

  /** Upper bound of the bucket holding quantile q (0..1). */
  quantile (q: number): number {
    if (this.count === 0) return 0
    const target = Math.max(1, Math.ceil(this.count * q))
    let acc = 0
    for (let i = 0; i < this.buckets.length; i++) {
      acc += this.buckets[i]!
      if (acc >= target) return i === 0 ? 1 : Math.min(this.max, 2 ** (i / Histogram.PER_OCTAVE))
    }
    return this.max
  }

  summary (): { count: number, meanMs: number, p50Ms: number, p95Ms: number, p99Ms: number, maxMs: number } {
    const r = (x: number): number => Math.round(x * 10) / 10
    return { count: this.count, meanMs: r(this.count ? this.sum / this.count : 0), p50Ms: r(this.quantile(0.5)), p95Ms: r(this.quantile(0.95)), p99Ms: r(this.quantile(0.99)), maxMs: r(this.max) }
  }
}

export type Counters = {
  /** Readings sampled (a seq was assigned). */
  generated: number
  /** Readings not sampled because the device's unacked queue was full. */
  skipped: number
  /** PUBLISH packets written, first sends and resends. */
  publishes: number
  resends: number
  acked: number
  connects: number
  connectErrors: number
  /** Connections that closed while the device wanted to be online. */
  connectionLosses: number
  churnDisconnects: number
  reboots: number
  /** Unacknowledged readings dropped by reboots (allowed loss). */
  droppedOnReboot: number
  receipts: number
  receiptErrors: number
}

export function newCounters (): Counters {
  return { generated: 0, skipped: 0, publishes: 0, resends: 0, acked: 0, connects: 0, connectErrors: 0, connectionLosses: 0, churnDisconnects: 0, reboots: 0, droppedOnReboot: 0, receipts: 0, receiptErrors: 0 }
}

export type SimStats = {
  counters: Counters
  /** PUBLISH to PUBACK on the same connection. */
  pubackMs: Histogram
  /** First publish of seq `upTo` to the receipt that confirms it stored upstream. */
  receiptMs: Histogram
  /** The last connection error seen (e.g. ECONNREFUSED), for a run that never connects. */
  lastConnectError: string | null
}

export function newStats (): SimStats {
  return { counters: newCounters(), pubackMs: new Histogram(), receiptMs: new Histogram(), lastConnectError: null }
}
