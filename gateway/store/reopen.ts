/**
 * Reopen after a failed write. LevelDB keeps an error like ENOSPC sticky until the
 * database is reopened, so after a failed batch the writer waits (backoff 0.2 .. 5 s),
 * closes and reopens it, and re-reads the partition counters: a batch reported failed may
 * still have reached the log and be replayed on open. Until a write succeeds again the
 * store reports the failure (readiness).
 */
import type { Logger } from 'pino'
import { StoreError } from '../../protocol/index.ts'
import type { Db } from './db.ts'
import { K } from './keys.ts'
import type { Partition } from './partition.ts'
import type { Quota } from './quota.ts'
import { readCounter } from './recover.ts'

export class Reopener {
  private failure: Error | null = null
  private delayMs = 0

  constructor (private readonly db: Db, private readonly parts: Partition[], private readonly quota: Quota, private readonly log: Logger, private readonly isClosed: () => boolean) {}

  /** A write failed: the next step is a reopen. */
  failed (err: Error): void {
    this.failure = err
  }

  /** A write succeeded. */
  succeeded (): void {
    if (this.delayMs) this.log.info('store writes again')
    this.delayMs = 0
  }

  /** The error of the last write while writes are failing, else null (for readiness). */
  get writeFailure (): Error | null {
    return this.delayMs > 0 ? this.failure ?? new StoreError('store recovering from a failed write') : null
  }

  /** Waits, reopens LevelDB and reloads the counters; false when it must be tried again. */
  async recover (): Promise<boolean> {
    this.delayMs = Math.min(5000, Math.max(200, this.delayMs * 2))
    await new Promise((r) => setTimeout(r, this.delayMs))
    if (this.isClosed()) return false
    try {
      await this.db.close()
      await this.db.open()
      for (const part of this.parts) {
        const c = readCounter(await this.db.get(K.counter(part.p)))
        if (!c) continue
        this.quota.apply(c[1] - part.items, c[2] - part.bytes)
        part.reload(c[0], c[1], c[2])
      }
      this.failure = null
      this.log.warn({ retryInMs: this.delayMs }, 'store reopened after a failed write; retrying writes')
      return true
    } catch (err) {
      this.log.error({ err }, 'store reopen failed; will retry')
      return false
    }
  }
}
