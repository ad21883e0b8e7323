/** The load generator's per-connection record of outstanding QoS 1 publishes (bench/loadgen.ts). */

/** Outstanding publishes of one connection in publish order: packet id + write time. */
export class Inflight {
  private pids: Uint16Array
  private times: Float64Array
  private head = 0
  private size = 0 // including tombstones of out-of-order acks
  live = 0

  constructor (capacity: number) {
    let c = 8
    while (c < capacity) c *= 2
    this.pids = new Uint16Array(c)
    this.times = new Float64Array(c)
  }

  push (pid: number, t: number): void {
    if (this.size === this.pids.length) this.grow()
    const i = (this.head + this.size) & (this.pids.length - 1)
    this.pids[i] = pid
    this.times[i] = t
    this.size++
    this.live++
  }

  /** Write time of `pid`, or -1 if it is not outstanding; `ordered` false if it was not the oldest. */
  ack (pid: number): { t: number, ordered: boolean } {
    const mask = this.pids.length - 1
    if (this.size === 0) return { t: -1, ordered: true }
    if (this.pids[this.head] === pid && this.times[this.head]! >= 0) {
      const t = this.times[this.head]!
      this.pop()
      while (this.size > 0 && this.times[this.head]! < 0) this.pop()
      this.live--
      return { t, ordered: true }
    }
    for (let k = 1; k < this.size; k++) {
      const i = (this.head + k) & mask
      if (this.pids[i] === pid && this.times[i]! >= 0) {
        const t = this.times[i]!
        this.times[i] = -1
        this.live--
        return { t, ordered: false }
      }
    }
    return { t: -1, ordered: true }
  }

  private pop (): void {
    this.head = (this.head + 1) & (this.pids.length - 1)
    this.size--
  }

  private grow (): void {
    const n = this.pids.length * 2
    const pids = new Uint16Array(n)
    const times = new Float64Array(n)
    for (let k = 0; k < this.size; k++) {
      const i = (this.head + k) & (this.pids.length - 1)
      pids[k] = this.pids[i]!
      times[k] = this.times[i]!
    }
    this.pids = pids
    this.times = times
    this.head = 0
  }
}
