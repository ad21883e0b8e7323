/**
 * The flusher: partition buffers -> CBOR batches -> ingest -> per-item acks (DESIGN.md
 * section 6). One loop per partition, at most one batch in flight per partition (order),
 * at most `maxInFlight` partitions sending at once. A batch closes at batchMaxItems,
 * batchMaxBytes or lingerMs after its first item, whichever comes first.
 *
 * Whole-request outcomes: 200 -> per item; 400 -> bisect until the poison item is alone,
 * then dead-letter it; 413 -> split; 401/403 -> pause all partitions, report unready,
 * retry slowly, never dead-letter; 429/503 -> wait Retry-After; other 5xx, timeouts,
 * resets -> exponential backoff with jitter and the same items again (a response lost
 * after the ingest committed ends with the ingest answering duplicate).
 */
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import {
  AckCode, AckCodeName, decodeResponse, decodeTrusted, encodeBatchRaw, encodeReceipt, receiptsTopic,
  type BatchItem
} from '../../protocol/index.ts'
import type { Metrics } from '../admin/metrics.ts'
import type { Store } from '../store/index.ts'
import { Backoff, Sleeper } from './backoff.ts'
import { computeReceipts, type SettledItem } from './receipts.ts'
import { Upstream } from './upstream.ts'

export type FlushConfig = {
  gatewayId: string
  upstream: string[]
  token: string
  batchMaxItems: number
  batchMaxBytes: number
  lingerMs: number
  maxInFlight: number
  requestTimeoutMs: number
  gzip: boolean
  retryBaseMs: number
  retryMaxMs: number
  authRetryMs: number
  unreadyAfterMs: number
  receipts: boolean
}

export type UpstreamState = 'idle' | 'ok' | 'retrying' | 'auth-failed' | 'unreachable'

export type UpstreamStatus = { state: UpstreamState, url: string, lastError: string | null, lastOkAt: number | null, failingSinceMs: number | null }

type Publisher = (topic: string, payload: Buffer) => Promise<void>

/**
 * done: every item has a final answer; retry-items: the upstream asked to retry some;
 * failed: the request as a whole failed (network, 5xx, 429, 401...): wait, then read the
 * partition again. The batch is not held while waiting, so drop-oldest can evict from it
 * and the resend carries exactly what is still buffered.
 */
type Outcome = { kind: 'done' } | { kind: 'retry-items' } | { kind: 'failed', waitMs?: number }
const DONE: Outcome = { kind: 'done' }
const RETRY_ITEMS: Outcome = { kind: 'retry-items' }
const FAILED: Outcome = { kind: 'failed' }

/** Retry-After is honoured up to this (a broken header must not park a partition for days). */
const MAX_RETRY_AFTER_MS = 10 * 60_000
/** Receipt publishes waiting in the broker; beyond this, receipts are dropped (and counted). */
const MAX_RECEIPTS_PENDING = 10_000

/** The device of a buffered item, or '?' when the item cannot be read (it may be the poison). */
function deviceOf (raw: Buffer): string {
  try { return String((decodeTrusted(raw) as BatchItem)[2]) } catch { return '?' }
}

export class Flusher {
  private readonly upstream: Upstream
  private readonly log: Logger
  private readonly sleeper = new Sleeper()
  private readonly wakers: Array<(() => void) | null>
  private readonly firstSeenAt: number[]
  private readonly oldestRx: Array<number | null>
  private running = 0
  private readonly slotWaiters: Array<() => void> = []
  private closed = false
  private loops: Promise<void>[] = []
  private ageTimer: NodeJS.Timeout | null = null
  private state: UpstreamState = 'idle'
  private lastError: string | null = null
  private lastOkAt: number | null = null
  private failingSince: number | null = null
  private authPausedUntil = 0
  private receiptsPending = 0

  constructor (private readonly store: Store, private readonly config: FlushConfig, private readonly publish: Publisher, private readonly metrics: Metrics, logger: Logger) {
    this.log = logger.child({ component: 'flush' })
    this.upstream = new Upstream({ urls: config.upstream, token: config.token, timeoutMs: config.requestTimeoutMs, gzip: config.gzip, maxSockets: config.maxInFlight })
    this.wakers = Array.from({ length: store.partitions }, () => null)
    this.firstSeenAt = Array.from({ length: store.partitions }, () => 0)
    this.oldestRx = Array.from({ length: store.partitions }, () => null)
    store.on('appended', (ps) => {
      const now = performance.now()
      for (const p of ps) {
        if (this.firstSeenAt[p] === 0) this.firstSeenAt[p] = now
        this.wakers[p]?.()
      }
    })
  }

  start (): void {
    if (this.config.upstream.length === 0) {
      this.log.warn('no --upstream configured: readings are buffered, never flushed')
      return
    }
    for (let p = 0; p < this.store.partitions; p++) this.loops.push(this.loop(p))
    this.ageTimer = setInterval(() => { this.refreshOldest().catch(() => {}) }, 1000)
    this.ageTimer.unref()
    void this.refreshOldest().catch(() => {})
  }

  status (): UpstreamStatus {
    return { state: this.state, url: this.upstream.url, lastError: this.lastError, lastOkAt: this.lastOkAt, failingSinceMs: this.failingSince === null ? null : Math.round(performance.now() - this.failingSince) }
  }

  /** False while the upstream refuses our token, or has been failing for unreadyAfterMs. */
  get ready (): boolean {
    if (this.state === 'auth-failed') return false
    return this.failingSince === null || performance.now() - this.failingSince < this.config.unreadyAfterMs
  }

  oldestAgeMs (p: number): number | null {
    const rx = this.oldestRx[p]
    return rx === null || rx === undefined ? null : Math.max(0, Date.now() - rx)
  }

  private async refreshOldest (): Promise<void> {
    let oldest: number | null = null
    for (let p = 0; p < this.store.partitions; p++) {
      const raw = this.store.items > 0 && this.store.partitionStats()[p]!.depth > 0 ? await this.store.oldest(p) : null
      const item = raw ? decodeTrusted(raw) as BatchItem : null
      this.oldestRx[p] = item ? item[6] : null
      if (item && (oldest === null || item[6] < oldest)) oldest = item[6]
    }
    this.metrics.oldestAge.set(oldest === null ? 0 : Math.max(0, Date.now() - oldest) / 1000)
  }

  private async waitForData (p: number): Promise<void> {
    while (!this.closed) {
      const s = this.store.partitionStats()[p]!
      // items already answered, whose delete is being written, are not sendable
      const sendable = s.depth - s.settling
      if (sendable > 0) {
        // linger: a small batch waits for company, a large backlog goes at once
        if (this.firstSeenAt[p] === 0) this.firstSeenAt[p] = performance.now()
        const waited = performance.now() - this.firstSeenAt[p]!
        if (sendable >= this.config.batchMaxItems || s.bytes >= this.config.batchMaxBytes || waited >= this.config.lingerMs) return
        await this.wait(p, this.config.lingerMs - waited)
        continue
      }
      this.firstSeenAt[p] = 0
      await this.wait(p, 60_000)
    }
  }

  private wait (p: number, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, Math.max(1, ms))
      function done (): void { clearTimeout(t); resolve() }
      this.wakers[p] = () => { this.wakers[p] = null; done() }
    })
  }

  private async acquire (): Promise<void> {
    while (this.running >= this.config.maxInFlight) await new Promise<void>((r) => this.slotWaiters.push(r))
    this.running++
  }

  private releaseSlot (): void {
    this.running--
    this.slotWaiters.shift()?.()
  }

  private async loop (p: number): Promise<void> {
    const backoff = new Backoff(this.config.retryBaseMs, this.config.retryMaxMs)
    const requestBackoff = new Backoff(this.config.retryBaseMs, this.config.retryMaxMs)
    while (!this.closed) {
      try {
        await this.waitForData(p)
        if (this.closed) break
        const pause = this.authPausedUntil - performance.now()
        if (pause > 0) { await this.sleeper.sleep(pause); continue }
        await this.acquire()
        let outcome: Outcome
        try {
          const batch = await this.store.readBatch(p, this.config.batchMaxItems, this.config.batchMaxBytes)
          if (batch.seqs.length === 0) {
            this.store.release(p)
            this.firstSeenAt[p] = 0
            // nothing sendable after all (e.g. only items being dead-lettered): do not spin
            await this.wait(p, 20)
            continue
          }
          this.firstSeenAt[p] = performance.now()
          outcome = await this.deliver(p, batch.seqs, batch.raws)
        } finally {
          this.store.release(p)
          this.releaseSlot()
        }
        if (outcome.kind === 'failed') {
          await this.sleeper.sleep(outcome.waitMs ?? requestBackoff.next())
          continue
        }
        requestBackoff.reset()
        if (outcome.kind === 'retry-items') await this.sleeper.sleep(backoff.next())
        else backoff.reset()
      } catch (err) {
        if (this.closed) break
        this.log.error({ partition: p, err: (err as Error).message }, 'flush loop error; retrying')
        await this.sleeper.sleep(backoff.next())
      }
    }
  }

  /** Sends items once; a 400/413 is bisected/split here until each part has its answer. */
  private async deliver (p: number, seqs: number[], raws: Buffer[]): Promise<Outcome> {
    {
      if (this.closed) return DONE
      const evicted = this.store.pendingEvicted()
      const batchId = randomBytes(8).toString('hex')
      const body = encodeBatchRaw({ gateway: this.config.gatewayId, epoch: this.store.epoch, batch: batchId, floors: [[p, this.store.floor(p)]], ...(evicted.length ? { evicted } : {}) }, raws)
      const t0 = performance.now()
      let status = 0
      let res
      try {
        res = await this.upstream.send(body)
        status = res.status
        this.metrics.upstreamBytes.inc(res.sentBytes)
      } catch (err) {
        this.metrics.upstreamRequest.observe({ status: 'error' }, (performance.now() - t0) / 1000)
        this.failed(err as Error, 'unreachable')
        this.metrics.upstreamBatches.inc({ outcome: 'network_error' })
        this.metrics.upstreamRetries.inc({ reason: 'network' })
        this.upstream.failover()
        return FAILED
      }
      this.metrics.upstreamRequest.observe({ status: String(status) }, (performance.now() - t0) / 1000)
      const message = errorMessage(res.body)
      if (status === 200) {
        let decoded
        try {
          decoded = decodeResponse(res.body)
        } catch (err) {
          this.failed(new Error(`unreadable 200 response from ${res.url}: ${(err as Error).message}`), 'retrying')
          this.metrics.upstreamBatches.inc({ outcome: 'bad_response' })
          return FAILED
        }
        this.ok()
        this.metrics.upstreamBatches.inc({ outcome: 'ok' })
        const outcome = await this.settle(p, seqs, raws, decoded.results)
        if (evicted.length) await this.store.evictedReported(evicted)
        return outcome
      }
      this.metrics.upstreamBatches.inc({ outcome: String(status) })
      if (status === 400 || status === 413) {
        this.ok() // the upstream is there; this batch is the problem
        if (seqs.length === 1) {
          const reason = `upstream answered ${status} for this item alone: ${message}`
          this.log.error({ partition: p, seq: seqs[0], status, message }, 'poison item dead-lettered')
          this.metrics.upstreamItems.inc({ code: 'rejected' })
          this.metrics.devices.deadLetter(deviceOf(raws[0]!))
          await this.store.settle(p, [], [{ s: seqs[0]!, raw: raws[0]!, reason }])
          return DONE
        }
        // bisect (400) / split (413): halves in order, each to its own final answer
        const mid = Math.ceil(seqs.length / 2)
        this.log.warn({ partition: p, items: seqs.length, status, message }, status === 400 ? 'batch refused as unreadable; bisecting' : 'batch too large; splitting')
        const a = await this.deliver(p, seqs.slice(0, mid), raws.slice(0, mid))
        if (a.kind === 'failed') return a
        const b = await this.deliver(p, seqs.slice(mid), raws.slice(mid))
        return b.kind !== 'done' ? b : a
      }
      if (status === 401 || status === 403) {
        this.failed(new Error(`upstream ${res.url} refused our token (${status}): ${message}`), 'auth-failed')
        this.authPausedUntil = performance.now() + this.config.authRetryMs // monotonic: a clock step must not park the loops
        this.log.error({ status, url: res.url, retryInMs: this.config.authRetryMs }, 'upstream refused our credentials; flushing paused')
        return { kind: 'failed', waitMs: this.config.authRetryMs }
      }
      this.failed(new Error(`upstream ${res.url} answered ${status}: ${message}`), status === 429 || status === 503 ? 'retrying' : 'unreachable')
      this.metrics.upstreamRetries.inc({ reason: String(status) })
      if (status >= 500 && status !== 503) this.upstream.failover()
      return (status === 429 || status === 503) && res.retryAfterMs !== undefined ? { kind: 'failed', waitMs: Math.min(res.retryAfterMs, MAX_RETRY_AFTER_MS) } : FAILED
    }
  }

  private async settle (p: number, seqs: number[], raws: Buffer[], results: [number, number, number, string?][]): Promise<Outcome> {
    const bySeq = new Map<number, [number, string | undefined]>()
    for (const r of results) if (r[0] === p) bySeq.set(r[1], [r[2], r[3]])
    const deletes: { s: number, size: number }[] = []
    const dead: { s: number, raw: Buffer, reason: string }[] = []
    const settled: SettledItem[] = []
    let retries = 0
    const byCode = new Map<AckCode, number>()
    for (let i = 0; i < seqs.length; i++) {
      const s = seqs[i]!
      const [code, reason] = bySeq.get(s) ?? [AckCode.Retry, undefined]
      byCode.set(code as AckCode, (byCode.get(code as AckCode) ?? 0) + 1)
      if (code === AckCode.Stored || code === AckCode.Duplicate) deletes.push({ s, size: raws[i]!.length })
      else if (code === AckCode.Rejected) {
        dead.push({ s, raw: raws[i]!, reason: `rejected by the ingest: ${reason ?? 'no reason given'}` })
        this.metrics.devices.deadLetter(deviceOf(raws[i]!))
      }
      else retries++
      if (this.config.receipts) {
        const item = decodeTrusted(raws[i]!) as BatchItem
        settled.push({ device: item[2], seq: item[3], boot: item[4], code: code as AckCode })
      }
    }
    for (const [code, n] of byCode) this.metrics.upstreamItems.inc({ code: AckCodeName[code] }, n)
    // Not awaited: the answer is in, so the batch is no longer in flight and the next batch
    // of this partition may go while these deletes wait for their group commit (the store
    // skips them when reading and keeps the floor below them until they are durable). A
    // failed write leaves them in the store; they are sent again and answered duplicate.
    const durable = this.store.settle(p, deletes, dead)
    durable.then(() => {
      // receipts are best effort and must never hold up the flush (a subscriber that does not
      // read can stall Aedes' delivery until its drain timeout): not awaited, bounded
      if (this.config.receipts) this.sendReceipts(settled)
    }, (err: Error) => {
      this.log.warn({ partition: p, items: deletes.length + dead.length, err: err.message }, 'deleting answered items failed; they will be sent again')
    })
    if (dead.length) this.log.warn({ partition: p, seqs: dead.map((d) => d.s), reason: dead[0]!.reason }, 'items rejected upstream; dead-lettered')
    if (retries) {
      this.metrics.upstreamRetries.inc({ reason: 'item' }, retries)
      this.log.debug({ partition: p, retries }, 'upstream asked to retry items')
    }
    return retries > 0 ? RETRY_ITEMS : DONE
  }

  private sendReceipts (items: SettledItem[]): void {
    for (const [device, receipts] of computeReceipts(items)) {
      for (const r of receipts) {
        if (this.receiptsPending >= MAX_RECEIPTS_PENDING) {
          this.metrics.receiptsDropped.inc()
          continue
        }
        this.receiptsPending++
        this.publish(receiptsTopic(device), encodeReceipt(r)).then(() => {
          this.metrics.receipts.inc()
        }, (err: Error) => {
          this.metrics.receiptsDropped.inc()
          this.log.debug({ device, err: err.message }, 'receipt not published')
        }).finally(() => { this.receiptsPending-- })
      }
    }
  }

  private ok (): void {
    if (this.state !== 'ok') this.log.info({ url: this.upstream.url }, 'upstream ok')
    this.state = 'ok'
    this.failingSince = null
    this.lastOkAt = Date.now()
  }

  private failed (err: Error, state: UpstreamState): void {
    if (this.state !== state || this.lastError !== err.message) this.log.warn({ err: err.message, state }, 'upstream request failed')
    this.state = state
    this.lastError = err.message
    if (this.failingSince === null) this.failingSince = performance.now()
  }

  /** Stops the loops; an in-flight request is abandoned (its items stay buffered). */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.ageTimer) clearInterval(this.ageTimer)
    this.sleeper.wake()
    for (const w of this.wakers) w?.()
    for (const r of this.slotWaiters.splice(0)) r()
    this.upstream.close()
    await Promise.race([Promise.allSettled(this.loops), new Promise((r) => setTimeout(r, 2000).unref())])
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
