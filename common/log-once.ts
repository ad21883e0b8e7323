/**
 * "Log once per key": a warning about an offender (a client over a limit, a hook that threw,
 * a publish that stores nothing, a refused mapped publish) is written the first time its key
 * is seen and only counted after that, so a client that repeats itself a million times makes
 * one line, not a million.
 *
 * The memory is bounded by `max` keys: what happens past it is the caller's choice.
 * - `forget` (the default): all keys are forgotten and the new one is kept, so an offender
 *   may be logged again after a flood of others; right where each line names someone to act on.
 * - `stop`: no new key is kept or logged; right where the lines are diagnostics (a stack per
 *   distinct error) and the first ones say everything.
 */
export const WhenFull = { Forget: 'forget', Stop: 'stop' } as const
export type WhenFull = (typeof WhenFull)[keyof typeof WhenFull]

export class LogOnce {
  private readonly seen = new Set<string>()

  constructor (readonly max: number, private readonly whenFull: WhenFull = WhenFull.Forget) {}

  /** True the first time `key` is seen (write the line then); false when it was logged already, or the memory is full and `stop`. */
  first (key: string): boolean {
    if (this.seen.has(key)) return false
    if (this.seen.size >= this.max) {
      if (this.whenFull === WhenFull.Stop) return false
      this.seen.clear()
    }
    this.seen.add(key)
    return true
  }

  /** Keys remembered now. */
  get size (): number { return this.seen.size }

  /** The keys remembered now (to check what the memory holds). */
  keys (): IterableIterator<string> { return this.seen.values() }
}
