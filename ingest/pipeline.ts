/**
 * The ingest's batch pipeline, free of any transport: decode, validate, bound the
 * partitions, commit to the sink (with its dedup), answer. The HTTP server (server.ts) and
 * the MQTT consumer (mqtt-consumer.ts) both run these steps on a `BatchCtx`; each puts its
 * own steps in front (HTTP: token or certificate, media type, body; MQTT: the topic check)
 * and turns `answer` into its own reply (an HTTP 200 body, a results message). Nothing here
 * holds a request, a response or a connection, so neither transport imports the other.
 *
 * A step ends a batch by throwing a `BatchRefusal` (refusal.ts: decode.ts, bounds.ts,
 * chaos.ts, `store` below), which says what happened, not how a transport answers it: HTTP
 * turns it into a status, headers and JSON body (server.ts), MQTT into a results message
 * (mqtt-consumer.ts), both with the status of the one table `REFUSAL_STATUS`, so a gateway
 * hears the same refusal on either path.
 *
 * Fault injection, when on, wraps the commit step (chaos.ts); a dropped answer sets
 * `dropped`, and the transport drops its reply (HTTP: the socket; MQTT: no results message).
 */
import type { Logger } from 'pino'
import { AckCode, AckCodeName, StoreError, type ItemResult, type RawBatchRequest } from '../protocol/index.ts'
import { boundPartitions } from './bounds.ts'
import { withChaos, type Chaos } from './chaos.ts'
import type { IngestConfig } from './config.ts'
import { decodeEnvelope, decodeEnvelopeV2, validateItems, type ValidatedItems } from './decode.ts'
import type { IngestMetrics } from './metrics.ts'
import type { RecentReadings } from './page/recent.ts'
import type { ReadAuth } from './read-auth.ts'
import { BatchRefusal } from './refusal.ts'
import type { ItemOutcome, Sink } from './sinks/types.ts'

/** What the pipeline's steps use, whatever brought the batch. */
export type PipelineDeps = {
  config: IngestConfig
  sink: Sink
  chaos: Chaos
  metrics: IngestMetrics
  log: Logger
  /** Fleets and the gateways the tokens config lists (read-auth.ts). */
  readAuth: ReadAuth
  /** latest reading per device, for the page at / */
  recent?: RecentReadings
}

/** One batch on its way through the pipeline; the fields fill in step by step. */
export type BatchCtx = {
  /** upstream protocol of the batch: 1, or 2 (columnar) */
  version: 1 | 2
  /** the gateway the transport vouches for (token, certificate, or topic) */
  gateway: string
  /** the body as received, before any content decoding */
  raw: Buffer
  /** the body decompressed: CBOR */
  body: Buffer
  batch: RawBatchRequest
  items: ValidatedItems
  /** Final per-item answers, request order. */
  results: ItemResult[]
  /** set by fault injection after the commit: the transport sends no answer */
  dropped: boolean
}

export type Step<C extends BatchCtx = BatchCtx, D extends PipelineDeps = PipelineDeps> = (ctx: C, deps: D) => void | Promise<void>

/** A fresh context for a batch from `gateway`; the steps fill in the rest. */
export function newBatch (gateway: string, version: 1 | 2 = 1): BatchCtx {
  return { version, gateway, dropped: false } as BatchCtx
}

export function decode (ctx: BatchCtx, deps: PipelineDeps): void {
  ctx.batch = ctx.version === 2 ? decodeEnvelopeV2(ctx.body, deps.config.maxItems) : decodeEnvelope(ctx.body, deps.config.maxItems)
}

export function validate (ctx: BatchCtx): void {
  ctx.items = validateItems(ctx.batch.items)
}

const warnedPartitions = new WeakMap<PipelineDeps, Set<string>>()

export function checkPartitions (ctx: BatchCtx, deps: PipelineDeps): void {
  const n = boundPartitions(ctx.batch, ctx.items, deps.config.maxPartitions)
  if (n === 0) return
  deps.metrics.outOfRangeItems.inc(n)
  let warned = warnedPartitions.get(deps)
  if (!warned) warnedPartitions.set(deps, warned = new Set())
  if (warned.has(ctx.gateway)) return
  warned.add(ctx.gateway) // once per offending gateway; the counter counts every item
  deps.log.warn({ gateway: ctx.gateway, items: n, maxPartitions: deps.config.maxPartitions }, 'items with a partition out of range rejected')
}

export async function store (ctx: BatchCtx, deps: PipelineDeps): Promise<void> {
  const { batch, items } = ctx
  if (batch.evicted && batch.evicted.length > 0) {
    deps.metrics.evictedRanges.inc(batch.evicted.length)
    deps.log.warn({ gateway: batch.gateway, epoch: batch.epoch, evicted: batch.evicted.slice(0, 20) }, 'gateway reports evicted readings (data loss)')
  }
  let outcomes: readonly (ItemOutcome | 'retry')[]
  try {
    outcomes = await deps.sink.storeBatch({
      gateway: batch.gateway,
      fleet: deps.readAuth.fleetOf(batch.gateway),
      epoch: batch.epoch,
      floors: batch.floors,
      evicted: batch.evicted ?? [],
      items: items.valid.map((v) => v.item),
      rejected: items.rejected
    })
  } catch (err) {
    if (err instanceof StoreError) {
      deps.log.error({ err, gateway: batch.gateway, batch: batch.batch }, 'sink write failed')
      if (!err.retryable) throw new BatchRefusal('busy', 'store_unavailable', `the sink could not store the batch: ${err.message}`, { retryAfterMs: 1000, cause: err })
      // Transient (e.g. the database restarting): nothing was stored; every item is answered retry.
      outcomes = items.valid.map(() => 'retry' as const)
    } else throw err
  }
  let conflicts = 0
  for (let i = 0; i < items.valid.length; i++) {
    const [p, s] = items.valid[i]!.item
    const o = outcomes[i]
    if (o === 'conflict') conflicts++
    // A conflict is answered stored: the item, as sent, is durably kept (in the conflicts
    // record), so the gateway may delete it; `duplicate` would claim that the ingest holds
    // a copy of it, which it does not, and `rejected` would dead-letter what is kept.
    items.results[items.valid[i]!.index] = o === 'stored' || o === 'conflict'
      ? [p, s, AckCode.Stored]
      : o === 'duplicate'
        ? [p, s, AckCode.Duplicate]
        : o === 'rejected'
          ? [p, s, AckCode.Rejected, 'the sink cannot store this item (text with U+0000 or an unpaired surrogate)']
          : [p, s, AckCode.Retry, 'the sink is unavailable; retry']
  }
  if (conflicts > 0) {
    deps.metrics.conflicts.inc(conflicts)
    const first = items.valid[outcomes.indexOf('conflict')]!.item
    deps.log.warn({ gateway: batch.gateway, epoch: batch.epoch, conflicts, device: first[2], boot: first[4], seq: first[3] }, 'readings with the natural key of a stored reading and other content kept as conflicts')
  }
  ctx.results = items.results as ItemResult[]
  deps.recent?.record(deps.readAuth.fleetOf(batch.gateway), batch.gateway, items.valid.map((v) => v.item), outcomes)
  const m = deps.metrics
  for (const r of ctx.results) m.items.inc({ code: AckCodeName[r[2]] })
  m.batchItems.observe(ctx.results.length)
}

/** The commit step: `store`, wrapped in fault injection only when chaos is on, so a normal ingest runs no chaos code. */
export function commitStep (chaos: Chaos): Step {
  return chaos.enabled ? withChaos<BatchCtx, PipelineDeps>(store) : store
}

/** The batch's answer: its id and one result per item, or null when fault injection dropped it. */
export function answer (ctx: BatchCtx): { batch: string, results: ItemResult[] } | null {
  return ctx.dropped ? null : { batch: ctx.batch.batch, results: ctx.results }
}
