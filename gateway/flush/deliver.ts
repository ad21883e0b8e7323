/**
 * Sends one partition's batch and brings every item to an answer: the whole-request
 * outcome follows the status table (status-actions.ts), a 200's per-item results the ack
 * mapper (ack-mapper.ts). A 400/413 is bisected/split here until each part has its answer.
 */
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import { AckCodeName, decodeTrusted, type BatchItem } from '../../protocol/index.ts'
import type { Metrics } from '../metrics/index.ts'
import type { Store } from '../store/index.ts'
import { mapAcks, type AckResult } from './ack-mapper.ts'
import type { FlushConfig } from './config.ts'
import type { UpstreamHealth } from './health.ts'
import type { ReceiptSender } from './receipt-sender.ts'
import { NO_ANSWER, ruleFor } from './status-actions.ts'
import type { BatchMeta } from './mqtt-upstream.ts'
import type { Upstream, UpstreamResponse } from './upstream.ts'
import type { Wire, WireFormat } from './wire.ts'

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

/**
 * What deliver needs of an upstream: the HTTP client (upstream.ts) or the MQTT one
 * (mqtt-upstream.ts, which also needs the batch's id and seqs to match its answer).
 */
export type BatchUpstream = Pick<Upstream, 'url' | 'pick' | 'failover'> & {
  send: (body: Buffer, wire: Wire, base: string, meta: BatchMeta) => Promise<UpstreamResponse & { sentBytes: number }>
}

type Deps = { store: Store, config: FlushConfig, upstream: BatchUpstream, wire: WireFormat, health: UpstreamHealth, receipts: ReceiptSender, metrics: Metrics, log: Logger, closed: () => boolean }

export class Deliverer {
  constructor (private readonly d: Deps) {}

  /** Sends items once; a 400/413 is bisected/split here until each part has its answer. */
  async deliver (p: number, seqs: number[], raws: Buffer[]): Promise<Outcome> {
    const { store, config, upstream, wire: wires, health, metrics, log } = this.d
    if (this.d.closed()) return DONE
    const evicted = store.pendingEvicted()
    const batchId = randomBytes(8).toString('hex')
    const url = upstream.pick(p)
    const wire = wires.choose(url)
    const { body, items } = wires.encode(wire, { gateway: config.gatewayId, epoch: store.epoch, batch: batchId, floors: [[p, store.floor(p)]], ...(evicted.length ? { evicted } : {}) }, raws)
    const t0 = performance.now()
    let res: UpstreamResponse & { sentBytes: number }
    try {
      res = await upstream.send(body, wire, url, { batchId, partition: p, seqs })
      metrics.upstreamBytes.inc(res.sentBytes)
    } catch (err) {
      metrics.upstreamRequest.observe({ status: 'error' }, (performance.now() - t0) / 1000)
      health.failed(err as Error, NO_ANSWER.health)
      metrics.upstreamBatches.inc({ outcome: 'network_error' })
      metrics.upstreamRetries.inc({ reason: 'network' })
      if (NO_ANSWER.failover) upstream.failover(p)
      return FAILED
    }
    const status = res.status
    metrics.upstreamRequest.observe({ status: String(status) }, (performance.now() - t0) / 1000)
    // protocol negotiation (wire.ts) comes before the status table: a v2 request to an
    // ingest without /v2/batches goes again at once as v1
    if (wires.observe(url, res.headers)) log.info({ url, protocol: wires.choose(url).version }, 'upstream protocol negotiated')
    if (wires.refusedV2(url, wire, status)) {
      log.warn({ url, status }, 'upstream has no protocol v2 endpoint; sending these items again as v1')
      return { kind: 'failed', waitMs: 0 }
    }
    const message = errorMessage(res.body)
    const rule = ruleFor(status)
    switch (rule.action) {
      case 'per-item': {
        let decoded
        try {
          decoded = wires.decodeResponse(wire, res.body)
        } catch (err) {
          health.failed(new Error(`unreadable 200 response from ${res.url}: ${(err as Error).message}`, { cause: err }), 'retrying')
          metrics.upstreamBatches.inc({ outcome: 'bad_response' })
          return FAILED
        }
        health.ok(upstream.url)
        metrics.upstreamBatches.inc({ outcome: 'ok' })
        const outcome = this.settle(p, seqs, raws, decoded.results, items)
        if (evicted.length) await store.evictedReported(evicted)
        return outcome
      }
      case 'bisect':
      case 'split': {
        metrics.upstreamBatches.inc({ outcome: String(status) })
        health.ok(upstream.url) // the upstream is there; this batch is the problem
        if (seqs.length === 1) {
          const reason = `upstream answered ${status} for this item alone: ${message}`
          log.error({ partition: p, seq: seqs[0], status, message }, 'poison item dead-lettered')
          metrics.upstreamItems.inc({ code: 'rejected' })
          metrics.devices.deadLetter(deviceOf(raws[0]!))
          await store.settle(p, [], [{ s: seqs[0]!, raw: raws[0]!, reason }])
          return DONE
        }
        // halves in order, each to its own final answer
        const mid = Math.ceil(seqs.length / 2)
        log.warn({ partition: p, items: seqs.length, status, message }, rule.action === 'bisect' ? 'batch refused as unreadable; bisecting' : 'batch too large; splitting')
        const a = await this.deliver(p, seqs.slice(0, mid), raws.slice(0, mid))
        if (a.kind === 'failed') return a
        const b = await this.deliver(p, seqs.slice(mid), raws.slice(mid))
        return b.kind !== 'done' ? b : a
      }
      case 'pause-auth':
        metrics.upstreamBatches.inc({ outcome: String(status) })
        health.failed(new Error(`upstream ${res.url} refused our token (${status}): ${message}`), rule.health)
        health.pauseFor(config.authRetryMs)
        log.error({ status, url: res.url, retryInMs: config.authRetryMs }, 'upstream refused our credentials; flushing paused')
        return { kind: 'failed', waitMs: config.authRetryMs }
      case 'retry-after':
      case 'backoff':
        metrics.upstreamBatches.inc({ outcome: String(status) })
        health.failed(new Error(`upstream ${res.url} answered ${status}: ${message}`), rule.health)
        metrics.upstreamRetries.inc({ reason: String(status) })
        if (rule.failover) upstream.failover(p)
        return rule.action === 'retry-after' && res.retryAfterMs !== undefined ? { kind: 'failed', waitMs: Math.min(res.retryAfterMs, MAX_RETRY_AFTER_MS) } : FAILED
    }
  }

  private settle (p: number, seqs: number[], raws: Buffer[], results: AckResult[], items?: BatchItem[]): Outcome {
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

function errorMessage (body: Buffer): string {
  if (body.length === 0) return ''
  try {
    const j = JSON.parse(body.subarray(0, 4096).toString('utf8')) as { error?: unknown, message?: unknown }
    return [j.error, j.message].filter((x) => typeof x === 'string').join(': ')
  } catch {
    return body.subarray(0, 200).toString('utf8')
  }
}

/** The device of a buffered item (the admin page's devices table), '?' when unreadable (it may be the poison). */
function deviceOf (raw: Buffer): string {
  try { return String((decodeTrusted(raw) as BatchItem)[2]) } catch { return '?' }
}
