/**
 * Group commit, the mechanism without the storage: work submitted while a write is in
 * progress is gathered into the next group, so N concurrent submitters cost one durable
 * write (one fsync), not N. Used by the gateway store and the ingest's LevelDB sink.
 *
 * It lives in common/ because both sides need it and they may not import each other; it
 * does no I/O itself (it only orders promises and defers with setImmediate): the owner's
 * `write` does the I/O.
 *
 * Invariants
 * - One write at a time, groups in submission order. Before each write the committer yields
 *   one `setImmediate`, so every submission of the current I/O phase joins the group.
 * - A group's submitters are told only after its write resolved. If a write fails, the
 *   group gathering behind it is detached and failed too (its in-memory effects may rest on
 *   the failed one): `settle(group, err, behind)` gets both, so the owner can undo state
 *   before it tells anyone.
 * - Optional commit interval (`intervalMs()`, as Kafka's `flush.ms` / PostgreSQL's
 *   `commit_delay`): a write starts at most once per interval, counted from the start of
 *   the last one, so under load each durable write carries more work; a lone submission
 *   after a quiet spell is not delayed.
 * - After a failure, the owner's optional `recover()` runs (as its own step, before any
 *   further write, again until it reports success), e.g. to reopen a database that keeps
 *   an error sticky.
 */

export type GroupWriter<G> = {
  /** A new, empty group. */
  create: () => G
  /** True when a group has nothing to write (no write happens for it). */
  empty: (g: G) => boolean
  /** Writes one group durably; rejects if it is not. */
  write: (g: G) => Promise<void>
  /**
   * The group's write resolved (`err` null) or failed. On failure `behind` is the group
   * that was gathering behind it, already detached: fail its submitters as well.
   */
  settle: (g: G, err: Error | null, behind: G | null) => void
  /** Runs after a failed write, before the next one (reopen, backoff); false: run it again. */
  recover?: () => Promise<boolean>
  /** Least time between the starts of two writes (0 or absent: none). */
  intervalMs?: () => number
}

export class GroupCommit<G> {
  /** The group gathering now: submitters add to it, then call `schedule()`. */
  current: G
  private writing: Promise<void> | null = null
  private scheduled = false
  private closed = false
  private failed = false
  /** performance.now() when the last write started (the commit interval counts from it) */
  private lastStart = -Infinity

  constructor (private readonly owner: GroupWriter<G>) {
    this.current = owner.create()
  }

  /** True while a write (or a recovery) is under way. */
  get busy (): boolean { return this.writing !== null }

  /** The write under way, if any (resolves when it ended, never rejects). */
  get inProgress (): Promise<void> | null { return this.writing }

  /** Asks for a write of the current group (no-op while one is scheduled or running). */
  schedule (): void {
    if (this.scheduled || this.writing || this.closed) return
    this.scheduled = true
    const run = (): void => { this.scheduled = false; this.run() }
    // setImmediate: let every socket read of this I/O phase add to the group first; within
    // the commit interval of the last write, wait for its end (more work per durable write)
    const wait = this.lastStart + (this.owner.intervalMs?.() ?? 0) - performance.now()
    if (wait >= 1) setTimeout(run, wait)
    else setImmediate(run)
  }

  private run (): void {
    if (this.writing) return
    if (this.failed && this.owner.recover && !this.closed) {
      this.writing = this.owner.recover().then((ok) => { if (ok) this.failed = false }, () => {}).finally(() => {
        this.writing = null
        this.schedule()
      })
      return
    }
    const g = this.current
    if (this.owner.empty(g)) return
    this.current = this.owner.create()
    this.lastStart = performance.now()
    this.writing = this.writeGroup(g).finally(() => {
      this.writing = null
      this.schedule()
    })
  }

  private async writeGroup (g: G): Promise<void> {
    let err: Error | null = null
    try {
      await this.owner.write(g)
    } catch (e) {
      err = e as Error
    }
    if (err) {
      const behind = this.current
      this.current = this.owner.create()
      this.failed = true
      this.owner.settle(g, err, behind)
      return
    }
    this.owner.settle(g, null, null)
  }

  /**
   * Writes until `pending(current)` is false and nothing is under way, then refuses further
   * scheduling (close). What `pending` leaves out of the last group is not written.
   */
  async close (pending: (g: G) => boolean = (g) => !this.owner.empty(g)): Promise<void> {
    while (this.writing || this.scheduled || pending(this.current)) {
      if (this.writing) await this.writing
      else if (pending(this.current) && !this.scheduled) this.run()
      else await new Promise((r) => setImmediate(r))
    }
    this.closed = true
  }

  /** Resolves when nothing is scheduled or being written. */
  async idle (): Promise<void> {
    while (this.writing || this.scheduled) {
      if (this.writing) await this.writing
      else await new Promise((r) => setImmediate(r))
    }
  }
}
