/**
 * One scheduler for every device: a binary min-heap of (due time, slot) on a single timer.
 * A device's k-th tick is due at `start + phase + k * period`, computed from absolute
 * times, so lateness never accumulates (drift-free): when the event loop is late the
 * scheduler fires everything due and the next target stays where it was.
 *
 * The clock is injectable so pacing is tested with a fake clock and no sleeps.
 */
import { Histogram } from '../common/index.ts'

export type Clock = {
  now: () => number
  setTimer: (fn: () => void, ms: number) => unknown
  clearTimer: (handle: unknown) => void
}

export const realClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  setTimer: (fn, ms) => { const t = setTimeout(fn, ms); return t },
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout)
}

/** Called when a slot's tick is due; `due` is its target time, `k` the tick index. */
export type TickFn = (slot: number, due: number, k: number) => void

export type LatenessStats = { ticks: number, meanMs: number, maxMs: number, p99Ms: number }

/**
 * Slots are small integers (device indexes). Per slot the heap stores only the due time
 * and the tick counter in typed arrays: 10,000 slots cost a few hundred KiB.
 */
export class Scheduler {
  private readonly clock: Clock
  private readonly onTick: TickFn
  private heap: Int32Array
  private size = 0
  private due: Float64Array
  private start: Float64Array
  private period: Float64Array
  private k: Float64Array
  private pos: Int32Array
  private timer: unknown = null
  private timerAt = Infinity
  private running = false
  /** tick lateness (the latency histogram shared with bench/) */
  private readonly late = new Histogram()

  constructor (capacity: number, onTick: TickFn, clock: Clock = realClock) {
    this.clock = clock
    this.onTick = onTick
    this.heap = new Int32Array(capacity)
    this.due = new Float64Array(capacity)
    this.start = new Float64Array(capacity)
    this.period = new Float64Array(capacity)
    this.k = new Float64Array(capacity)
    this.pos = new Int32Array(capacity).fill(-1)
  }

  /** Schedules `slot` every `periodMs` from `startAt` (absolute ms); replaces an earlier plan. */
  add (slot: number, startAt: number, periodMs: number): void {
    if (!(periodMs > 0)) throw new RangeError(`periodMs must be > 0, got ${periodMs}`)
    if (!Number.isInteger(slot) || slot < 0) throw new RangeError(`slot must be a non-negative integer, got ${slot}`)
    while (slot >= this.pos.length) this.grow()
    this.remove(slot)
    this.start[slot] = startAt
    this.period[slot] = periodMs
    this.k[slot] = 0
    this.due[slot] = startAt
    this.push(slot)
    this.arm()
  }

  remove (slot: number): void {
    const i = this.pos[slot] ?? -1
    if (i < 0) return
    this.removeAt(i)
    this.arm()
  }

  has (slot: number): boolean { return (this.pos[slot] ?? -1) >= 0 }
  get scheduled (): number { return this.size }

  begin (): void { this.running = true; this.arm() }

  stop (): void {
    this.running = false
    if (this.timer !== null) this.clock.clearTimer(this.timer)
    this.timer = null
    this.timerAt = Infinity
  }

  lateness (): LatenessStats {
    const h = this.late
    return { ticks: h.count, meanMs: h.count ? h.sumUs / h.count / 1000 : 0, maxMs: h.maxUs / 1000, p99Ms: h.quantileMs(0.99) }
  }

  /** Starts a new measurement window for `lateness()`. */
  resetLateness (): void {
    this.late.reset()
  }

  /** Runs every tick due at or before now. Public so a fake clock can drive it. */
  run (): void {
    this.timer = null
    this.timerAt = Infinity
    if (!this.running) return
    const now = this.clock.now()
    while (this.size > 0) {
      const slot = this.heap[0]!
      const due = this.due[slot]!
      if (due > now) break
      const k = this.k[slot]!
      // advance before the callback so it may remove or re-add its own slot
      this.k[slot] = k + 1
      this.due[slot] = this.start[slot]! + (k + 1) * this.period[slot]!
      this.siftDown(0)
      this.late.recordMs(now - due)
      this.onTick(slot, due, k)
    }
    this.arm()
  }

  private arm (): void {
    if (!this.running || this.size === 0) return
    const next = this.due[this.heap[0]!]!
    if (this.timer !== null && this.timerAt <= next) return
    if (this.timer !== null) this.clock.clearTimer(this.timer)
    this.timerAt = next
    this.timer = this.clock.setTimer(() => this.run(), Math.max(0, next - this.clock.now()))
  }

  private push (slot: number): void {
    while (this.size >= this.heap.length) this.grow()
    this.heap[this.size] = slot
    this.pos[slot] = this.size
    this.size++
    this.siftUp(this.size - 1)
  }

  private grow (): void {
    const n = this.heap.length * 2 || 16
    const g = <T extends Int32Array | Float64Array>(a: T, fill?: number): T => {
      const b = new (a.constructor as new (n: number) => T)(n)
      if (fill !== undefined) b.fill(fill)
      b.set(a)
      return b
    }
    this.heap = g(this.heap); this.due = g(this.due); this.start = g(this.start)
    this.period = g(this.period); this.k = g(this.k); this.pos = g(this.pos, -1)
  }

  private removeAt (i: number): void {
    const slot = this.heap[i]!
    this.pos[slot] = -1
    this.size--
    if (i === this.size) return
    const last = this.heap[this.size]!
    this.heap[i] = last
    this.pos[last] = i
    this.siftDown(i)
    this.siftUp(this.pos[last]!)
  }

  private less (a: number, b: number): boolean {
    return this.due[this.heap[a]!]! < this.due[this.heap[b]!]!
  }

  private swap (a: number, b: number): void {
    const sa = this.heap[a]!; const sb = this.heap[b]!
    this.heap[a] = sb; this.heap[b] = sa
    this.pos[sb] = a; this.pos[sa] = b
  }

  private siftUp (i: number): void {
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.less(i, p)) break
      this.swap(i, p)
      i = p
    }
  }

  private siftDown (i: number): void {
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < this.size && this.less(l, m)) m = l
      if (r < this.size && this.less(r, m)) m = r
      if (m === i) break
      this.swap(i, m)
      i = m
    }
  }
}
