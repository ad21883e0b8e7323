/**
 * Fault injection for tests and demos (docs/design.md sections 7 and 9), off by default. Every
 * decision comes from one seeded PRNG, so a run with `--chaos-seed` is reproducible for a
 * given order of requests.
 *
 * - retryRate / rejectRate: per item, answer 2 (retry) or 3 (rejected) instead of storing.
 *   Such an item is not passed to the sink: it is not stored.
 * - failRate: per batch, answer 503 (half of them with Retry-After) or 500 before storing.
 * - dropRate: per batch, commit, then destroy the socket without answering (the lost ack).
 * - latencyMs: per batch, wait this long after the commit before answering (the late ack).
 */
import { AckCode, mulberry32 } from '../protocol/index.ts'

export type ChaosConfig = {
  retryRate: number
  rejectRate: number
  failRate: number
  dropRate: number
  latencyMs: number
  seed: number
}

/** Seeded PRNG (protocol's mulberry32). */
export const createRng = mulberry32

export type BatchFault =
  | { kind: 'none' }
  | { kind: 'fail', status: 500 | 503, retryAfterS?: number }

export type ItemFault = typeof AckCode.Retry | typeof AckCode.Rejected | null

export class Chaos {
  readonly config: ChaosConfig
  private readonly rng: () => number

  constructor (config: ChaosConfig) {
    this.config = config
    this.rng = createRng(config.seed)
  }

  get enabled (): boolean {
    const c = this.config
    return c.retryRate > 0 || c.rejectRate > 0 || c.failRate > 0 || c.dropRate > 0 || c.latencyMs > 0
  }

  /** Whole-batch failure before anything is stored. */
  batchFault (): BatchFault {
    if (this.config.failRate <= 0 || this.rng() >= this.config.failRate) return { kind: 'none' }
    const r = this.rng()
    if (r < 0.5) return { kind: 'fail', status: 503, retryAfterS: 1 }
    if (r < 0.75) return { kind: 'fail', status: 503 }
    return { kind: 'fail', status: 500 }
  }

  /** Per-item fault: retry, reject, or null (store normally). */
  itemFault (): ItemFault {
    const { retryRate, rejectRate } = this.config
    if (retryRate <= 0 && rejectRate <= 0) return null
    const r = this.rng()
    if (r < retryRate) return AckCode.Retry
    if (r < retryRate + rejectRate) return AckCode.Rejected
    return null
  }

  /** Commit, then destroy the connection without an answer. */
  dropAfterCommit (): boolean {
    return this.config.dropRate > 0 && this.rng() < this.config.dropRate
  }
}
