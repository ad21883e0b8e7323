/**
 * A Prometheus histogram without labels for hot paths: `record(v)` adds to plain
 * bucket counts, which are added to the prom-client histogram when it is read (a scrape,
 * /status, the live sampler). prom-client's `observe` allocates a closure and a label
 * object per call; the intake observes every reading's PUBACK latency.
 *
 * It reaches into prom-client's one unlabelled value set (`hashMap['']`, created by its
 * constructor); test/unit/hot-histogram.test.ts checks the result against `observe`, so a
 * prom-client upgrade that changes that layout fails there.
 */
import { Histogram, type Registry } from 'prom-client'

type ValueSet = { bucketValues: Record<number, number>, sum: number, count: number }

export class HotHistogram extends Histogram {
  private readonly bounds: number[]
  private readonly pending: Float64Array
  private pendingSum = 0
  private pendingCount = 0

  constructor (opts: { name: string, help: string, buckets: number[], registers: Registry[] }) {
    let self: HotHistogram | null = null
    super({ ...opts, collect () { self?.drain() } })
    self = this
    this.bounds = [...opts.buckets].sort((a, b) => a - b)
    this.pending = new Float64Array(this.bounds.length)
  }

  /** One observation, no allocation. */
  record (value: number): void {
    const b = this.bounds
    let i = 0
    while (i < b.length && value > b[i]!) i++
    if (i < b.length) this.pending[i]!++
    this.pendingSum += value
    this.pendingCount++
  }

  private drain (): void {
    if (this.pendingCount === 0) return
    const v = (this as unknown as { hashMap: Record<string, ValueSet | undefined> }).hashMap['']
    if (!v) { // reset() leaves no value set: observe(0) makes one, then take that 0 back out
      this.observe(0)
      this.drain()
      const w = (this as unknown as { hashMap: Record<string, ValueSet> }).hashMap['']!
      w.bucketValues[this.bounds[0]!]!--
      w.count--
      return
    }
    for (let i = 0; i < this.bounds.length; i++) {
      if (this.pending[i]) { v.bucketValues[this.bounds[i]!]! += this.pending[i]!; this.pending[i] = 0 }
    }
    v.sum += this.pendingSum
    v.count += this.pendingCount
    this.pendingSum = 0
    this.pendingCount = 0
  }
}
