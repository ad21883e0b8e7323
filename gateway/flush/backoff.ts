/**
 * Exponential backoff with "equal jitter" (AWS architecture blog, "Exponential Backoff And
 * Jitter"): half the capped delay is fixed, half random, so a retry never comes sooner than
 * half its step while clients still spread out. Bounded by `maxMs`.
 */
export class Backoff {
  private attempt = 0
  constructor (private readonly baseMs: number, private readonly maxMs: number, private readonly random: () => number = Math.random) {}

  /** The next delay: uniform in [cap/2, cap], cap = min(max, base * 2^attempt), attempt from 0. */
  next (): number {
    const cap = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt)
    this.attempt = Math.min(this.attempt + 1, 30)
    return Math.round(cap / 2 + this.random() * cap / 2)
  }

  reset (): void { this.attempt = 0 }
  get attempts (): number { return this.attempt }
}

/**
 * A sleep that `wake()` ends early (shutdown; for the back-off after a failed request, the
 * upstream answering again). `woken` counts the wakes, so a sleeper can tell after its
 * sleep whether it was cut short.
 */
export class Sleeper {
  woken = 0

  /** How many are asleep now. */
  get sleeping (): number { return this.timers.size }

  private timers = new Set<{ t: NodeJS.Timeout, resolve: () => void }>()

  sleep (ms: number): Promise<void> {
    return new Promise((resolve) => {
      const h = { t: setTimeout(() => { this.timers.delete(h); resolve() }, ms), resolve }
      this.timers.add(h)
    })
  }

  wake (): void {
    this.woken++
    for (const h of this.timers) { clearTimeout(h.t); h.resolve() }
    this.timers.clear()
  }
}
