/**
 * Group commit: requests that arrive while a write is in progress are written together in
 * the next write, so N concurrent batches cost one fsync, not N.
 *
 * Writes happen strictly in submission order, one at a time. A submission resolves only
 * when the write holding it (and so every earlier one) is durable. If a write fails, it and
 * every submission queued behind it are rejected: their in-memory effects were computed on
 * top of the failed one, so none of them may be acknowledged. `onFailure` runs before the
 * rejections so the owner can drop that in-memory state first.
 */
export type Op = { type: 'put', key: string, value: string } | { type: 'del', key: string }

type Waiter = { resolve: () => void, reject: (err: unknown) => void }

export class GroupCommitter {
  private queue: Op[] = []
  private waiters: Waiter[] = []
  private writing: Promise<void> | null = null

  constructor (
    /** Writes one group; `finalOps` are appended by the owner (e.g. the counters snapshot). */
    private readonly write: (ops: Op[]) => Promise<void>,
    private readonly finalOps: () => Op[],
    private readonly onFailure: (err: unknown) => void,
    private readonly onGroup: (submissions: number, ops: number, seconds: number) => void = () => {}
  ) {}

  submit (ops: readonly Op[]): Promise<void> {
    for (const op of ops) this.queue.push(op)
    const p = new Promise<void>((resolve, reject) => { this.waiters.push({ resolve, reject }) })
    if (!this.writing) this.writing = this.drain()
    return p
  }

  /** Resolves when nothing is queued or being written. */
  async idle (): Promise<void> {
    while (this.writing) await this.writing.catch(() => {})
  }

  private async drain (): Promise<void> {
    // Let every request whose apply step is already scheduled join this group.
    await new Promise<void>((r) => setImmediate(r))
    while (this.waiters.length > 0) {
      const ops = this.queue
      const waiters = this.waiters
      this.queue = []
      this.waiters = []
      ops.push(...this.finalOps())
      const t0 = process.hrtime.bigint()
      try {
        await this.write(ops)
      } catch (err) {
        const behind = this.waiters
        this.queue = []
        this.waiters = []
        this.onFailure(err)
        for (const w of waiters) w.reject(err)
        for (const w of behind) w.reject(err)
        continue
      }
      this.onGroup(waiters.length, ops.length, Number(process.hrtime.bigint() - t0) / 1e9)
      for (const w of waiters) w.resolve()
    }
    this.writing = null
  }
}
