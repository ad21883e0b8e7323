/**
 * Sends one partition's batch and brings every item to an answer. It acts on the Answer
 * (answer.ts) whatever transport carried it: per-item results go to the ack mapper
 * (ack-mapper.ts), a refusal follows REFUSAL_RULES (too large is split and unreadable
 * bisected here until each part has its answer), no answer waits and sends again.
 */
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import { AckCodeName, decodeTrusted, type BatchItem } from '../../protocol/index.ts'
import type { Metrics } from '../metrics/index.ts'
import type { Store } from '../store/index.ts'
import { mapAcks, type AckResult } from './ack-mapper.ts'
import { NO_ANSWER_RULE, REFUSAL_RULES, Refusal, type Answer, type BatchUpstream } from './answer.ts'
import type { FlushConfig } from './config.ts'
import type { UpstreamHealth } from './health.ts'
import type { ReceiptSender } from './receipt-sender.ts'
import type { WireFormat } from './wire.ts'

/**
 * done: every item has a final answer; retry-items: the upstream asked to retry some;
 * failed: the request as a whole failed (network, 5xx, 429, 401...): wait, then read the
 * partition again. The batch is not held while waiting, so drop-oldest can evict from it
 * and the resend carries exactly what is still buffered.
 */
export type Outcome = { kind: 'done' } | { kind: 'retry-items' } | { kind: 'failed', waitMs?: number }
const DONE: Outcome = { kind: 'done' }
const RETRY_ITEMS: Outcome = { kind: 'retry-items' }
const FAILED: Outcome = { kind: 'failed' }

/** Retry-After is honoured up to this (a broken header must not park a partition for days). */
const MAX_RETRY_AFTER_MS = 10 * 60_000

type Deps = { store: Store, config: FlushConfig, upstream: BatchUpstream, wire: WireFormat, health: UpstreamHealth, receipts: ReceiptSender, metrics: Metrics, log: Logger, closed: () => boolean }

export class Deliverer {
  constructor (private readonly d: Deps) {}

  /** Sends items once; a refusal as too large or unreadable is split/bisected here until each part has its answer. */
  async deliver (p: number, seqs: number[], raws: Buffer[]): Promise<Outcome> {
    const { store, config, upstream, wire: wires, health, metrics, log } = this.d
    if (this.d.closed()) return DONE
    const evicted = store.pendingEvicted()
    const batchId = randomBytes(8).toString('hex')
    const url = upstream.pick(p)
    const wire = wires.choose(url)
    const { body, items } = wires.encode(wire, { gateway: config.gatewayId, epoch: store.epoch, batch: batchId, floors: [[p, store.floor(p)]], ...(evicted.length ? { evicted } : {}) }, raws)
    const t0 = performance.now()
    let answer: Answer
    try {
      answer = await upstream.send({ body, wire, url, batchId, partition: p, seqs })
    } catch (err) {
      // the interface says send does not reject; one that does is no answer all the same
      answer = { kind: 'none', error: err as Error }
    }
    if (answer.kind === 'none') {
      metrics.upstreamRequest.observe({ status: 'error' }, (performance.now() - t0) / 1000)
      health.failed(answer.error, NO_ANSWER_RULE.health)
      metrics.upstreamBatches.inc({ outcome: 'network_error' })
      metrics.upstreamRetries.inc({ reason: 'network' })
      if (NO_ANSWER_RULE.failover) upstream.failover(p)
      return FAILED
    }
    metrics.upstreamBytes.inc(answer.sentBytes)
    const label = answer.kind === 'refused' ? answer.label : '200'
    metrics.upstreamRequest.observe({ status: label }, (performance.now() - t0) / 1000)
    // protocol negotiation (wire.ts) comes before the rules: a v2 request to an ingest
    // without /v2/batches goes again at once as v1
    if (answer.offers && wires.observe(url, answer.offers)) log.info({ url, protocol: wires.choose(url).version }, 'upstream protocol negotiated')
    if (answer.kind === 'refused' && answer.reason === Refusal.NoEndpoint && wires.refusedV2(url, wire)) {
      log.warn({ url, status: label }, 'upstream has no protocol v2 endpoint; sending these items again as v1')
      return { kind: 'failed', waitMs: 0 }
    }
    if (answer.kind === 'garbled') {
      health.failed(answer.error, 'retrying')
      metrics.upstreamBatches.inc({ outcome: 'bad_response' })
      return FAILED
    }
    if (answer.kind === 'results') {
      health.ok(upstream.url)
      metrics.upstreamBatches.inc({ outcome: 'ok' })
      const outcome = this.settle(p, seqs, raws, answer.results, items)
      if (evicted.length) await store.evictedReported(evicted)
      return outcome
    }
    const { message } = answer
    const rule = REFUSAL_RULES[answer.reason]
    metrics.upstreamBatches.inc({ outcome: label })
    switch (rule.action) {
      case 'bisect':
      case 'split': {
        health.ok(upstream.url) // the upstream is there; this batch is the problem
        if (seqs.length === 1) {
          const reason = `upstream answered ${label} for this item alone: ${message}`
          log.error({ partition: p, seq: seqs[0], status: label, message }, 'poison item dead-lettered')
          metrics.upstreamItems.inc({ code: 'rejected' })
          metrics.devices.deadLetter(deviceOf(raws[0]!))
          await store.settle(p, [], [{ s: seqs[0]!, raw: raws[0]!, reason }])
          return DONE
        }
        // halves in order, each to its own final answer
        const mid = Math.ceil(seqs.length / 2)
        log.warn({ partition: p, items: seqs.length, status: label, message }, rule.action === 'bisect' ? 'batch refused as unreadable; bisecting' : 'batch too large; splitting')
        const a = await this.deliver(p, seqs.slice(0, mid), raws.slice(0, mid))
        if (a.kind === 'failed') return a
        const b = await this.deliver(p, seqs.slice(mid), raws.slice(mid))
        return b.kind !== 'done' ? b : a
      }
      case 'pause-auth':
        health.failed(new Error(`upstream ${answer.url} refused our token (${label}): ${message}`), rule.health)
        health.pauseFor(config.authRetryMs)
        log.error({ status: label, url: answer.url, retryInMs: config.authRetryMs }, 'upstream refused our credentials; flushing paused')
        return { kind: 'failed', waitMs: config.authRetryMs }
      case 'retry-after':
      case 'backoff':
        health.failed(new Error(`upstream ${answer.url} answered ${label}: ${message}`), rule.health)
        metrics.upstreamRetries.inc({ reason: label })
        if (rule.failover) upstream.failover(p)
        return rule.action === 'retry-after' && answer.retryAfterMs !== undefined ? { kind: 'failed', waitMs: Math.min(answer.retryAfterMs, MAX_RETRY_AFTER_MS) } : FAILED
    }
  }

  private settle (p: number, seqs: number[], raws: Buffer[], results: readonly AckResult[], items?: BatchItem[]): Outcome {
    const { store, config, metrics, log } = this.d
    const m = mapAcks(p, seqs, raws, results, config.receipts, items)
    for (const [code, n] of m.byCode) metrics.upstreamItems.inc({ code: AckCodeName[code] }, n)
    for (const d of m.dead) metrics.devices.deadLetter(deviceOf(d.raw))
    // Not awaited: the answer is in, so the batch is no longer in flight and the next batch
    // of this partition may go while these deletes wait for their group commit (the store
    // skips them when reading and keeps the floor below them until they are durable). A
    // failed write leaves them in the store; they are sent again and answered duplicate.
    store.settle(p, m.deletes, m.dead).then(() => {
      if (config.receipts) this.d.receipts.send(m.settled)
    }, (err: Error) => {
      log.warn({ partition: p, items: m.deletes.length + m.dead.length, err }, 'deleting answered items failed; they will be sent again')
    })
    if (m.dead.length) log.warn({ partition: p, seqs: m.dead.map((d) => d.s), reason: m.dead[0]!.reason }, 'items rejected upstream; dead-lettered')
    if (m.retries) {
      metrics.upstreamRetries.inc({ reason: 'item' }, m.retries)
      log.debug({ partition: p, retries: m.retries }, 'upstream asked to retry items')
    }
    return m.retries > 0 ? RETRY_ITEMS : DONE
  }
}

/** The device of a buffered item (the admin page's devices table), '?' when unreadable (it may be the poison). */
function deviceOf (raw: Buffer): string {
  try { return String((decodeTrusted(raw) as BatchItem)[2]) } catch { return '?' }
}
