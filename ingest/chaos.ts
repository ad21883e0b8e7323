/**
 * Fault injection for tests and demos (docs/design.md sections 7 and 9), off by default. Every
 * decision comes from one seeded PRNG, so a run with `--chaos-seed` is reproducible for a
 * given order of requests.
 *
 * - retryRate / rejectRate: per item, answer 2 (retry) or 3 (rejected) instead of storing.
 *   Such an item is not passed to the sink: it is not stored.
 * - failRate: per batch, refuse it before storing: busy, 503 (half of them with a retry
 *   after 1 s), or broken, 500 (refusal.ts).
 * - dropRate: per batch, commit, then destroy the socket without answering (the lost ack).
 * - latencyMs: per batch, wait this long after the commit before answering (the late ack).
 *
 * The faults sit around the commit, not inside the batch pipeline, so that the pipeline
 * reads as what a real ingest does: `withChaos(commit)` returns the commit step wrapped in
 * them, and pipeline.ts `commitStep` puts the wrapped step in the pipeline only when chaos
 * is enabled, so a normal ingest runs no chaos code.
 * The order of the PRNG draws (batch fault, one per item, drop) is part of reproducibility.
 * Guarded by test/unit/ingest-chaos.test.ts and the chaos tests of
 * test/integration/ingest-http.test.ts.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import { AckCode, AckCodeName } from '../protocol/index.ts'
import { mulberry32 } from '../common/index.ts'
import type { ValidatedItems } from './decode.ts'
import { BatchRefusal } from './refusal.ts'
import type { IngestMetrics } from './metrics.ts'

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

/** What the wrapper reads and sets of a batch (pipeline.ts `BatchCtx`). */
export type ChaosCtx = {
  gateway: string
  batch: { batch: string }
  items: ValidatedItems
  /** set after the commit when the answer is to be lost: the transport answers nothing (HTTP destroys the socket) */
  dropped: boolean
}

export type ChaosDeps = { chaos: Chaos, metrics: IngestMetrics, log: Logger }

type CommitStep<C, D> = (ctx: C, deps: D) => void | Promise<void>

/** The commit step with the faults around it: a batch failure or item faults before, latency and a dropped answer after. */
export function withChaos<C extends ChaosCtx, D extends ChaosDeps> (commit: CommitStep<C, D>): (ctx: C, deps: D) => Promise<void> {
  return async function chaosCommit (ctx, deps) {
    injectBatchFault(deps)
    injectItemFaults(ctx, deps)
    await commit(ctx, deps)
    await injectLatency(deps)
    dropAfterCommit(ctx, deps)
  }
}

function injectBatchFault (deps: ChaosDeps): void {
  const f = deps.chaos.batchFault()
  if (f.kind === 'none') return
  deps.metrics.chaos.inc({ kind: `fail_${f.status}` })
  // 503 is `busy` (retry later), 500 is `broken` (refusal.ts)
  throw new BatchRefusal(f.status === 503 ? 'busy' : 'broken', 'chaos', 'injected failure (--chaos-fail-rate)', f.retryAfterS === undefined ? {} : { retryAfterMs: f.retryAfterS * 1000 })
}

/** Answers some items retry or rejected and takes them out of what the commit stores. */
function injectItemFaults (ctx: ChaosCtx, deps: ChaosDeps): void {
  const keep: ValidatedItems['valid'] = []
  for (const v of ctx.items.valid) {
    const code = deps.chaos.itemFault()
    if (code === null) { keep.push(v); continue }
    deps.metrics.chaos.inc({ kind: AckCodeName[code] })
    const [p, s] = v.item
    ctx.items.results[v.index] = [p, s, code, `injected ${AckCodeName[code]} (--chaos-${code === AckCode.Retry ? 'retry' : 'reject'}-rate)`]
    if (code === AckCode.Rejected) ctx.items.rejected++
  }
  ctx.items.valid = keep
}

async function injectLatency (deps: ChaosDeps): Promise<void> {
  if (deps.chaos.config.latencyMs <= 0) return
  deps.metrics.chaos.inc({ kind: 'latency' })
  await sleep(deps.chaos.config.latencyMs)
}

function dropAfterCommit (ctx: ChaosCtx, deps: ChaosDeps): void {
  if (!deps.chaos.dropAfterCommit()) return
  deps.metrics.chaos.inc({ kind: 'drop' })
  deps.log.info({ gateway: ctx.gateway, batch: ctx.batch.batch }, 'injected drop: committed, closing without an answer')
  ctx.dropped = true
}
