/**
 * The flusher: partition buffers -> CBOR batches -> upstream -> per-item acks (upstream
 * protocols v1 and v2, docs/design.md section 6, docs/upstream.md, docs/protocol-v2.md). One loop per partition, at most one batch in flight per
 * partition (order), at most `maxInFlight` partitions sending at once. A batch closes at
 * batchMaxItems, batchMaxBytes or lingerMs after its first item, whichever comes first.
 *
 * This file is the partition loop and the linger; the rest, one concern a file:
 *   answer.ts          what an upstream answers, transport-free, and the BatchUpstream interface
 *   upstream.ts        the factory: the transport the --upstream URLs ask for
 *   deliver.ts         one batch to its answer (bisect/split, pause, backoff)
 *   ack-mapper.ts      per-item results -> delete / retry / dead-letter
 *   receipts.ts, receipt-sender.ts   receipts to devices
 *   health.ts          upstream state for /status and /readyz
 *   oldest-age.ts      the oldest unacked item's age
 *   backoff.ts         the retry delays
 *   wire.ts            protocol v1/v2 and compression, negotiated per URL
 * The transports behind BatchUpstream:
 *   http-upstream.ts   HTTP POSTs and failover; status-actions.ts reads an HTTP status as an answer
 *   mqtt-upstream.ts   one PUBLISH a batch through a cloud broker (docs/upstream-mqtt.md), broker
 *                      ack or results; mqtt-results.ts how much of a results message it reads,
 *                      mqtt-config.ts its flags, mqtt-metrics.ts its metrics
 */
import type { Logger } from 'pino'
import { Counter } from 'prom-client'
import type { Metrics } from '../metrics/index.ts'
import type { Store } from '../store/index.ts'
import { Backoff, Sleeper } from './backoff.ts'
import type { FlushConfig } from './config.ts'
import type { BatchUpstream } from './answer.ts'
import { Deliverer, type Outcome } from './deliver.ts'
import { UpstreamHealth, type UpstreamStatus } from './health.ts'
import { OldestAge } from './oldest-age.ts'
import { ReceiptSender, type Publisher } from './receipt-sender.ts'
import { mqttMetrics } from './mqtt-metrics.ts'
import { MqttUpstream, type MqttUpstreamStatus } from './mqtt-upstream.ts'
import { createUpstream } from './upstream.ts'
import { WireFormat } from './wire.ts'

export type { FlushConfig } from './config.ts'
export type { UpstreamState, UpstreamStatus } from './health.ts'
export { Refusal, type Answer, type BatchUpstream, type OutgoingBatch } from './answer.ts'

/** `upstream`: an upstream of the caller's (a test's or a simulation's fake) instead of the one the flags make (answer.ts). */
export type FlusherOptions = { upstream?: BatchUpstream | undefined }

export class Flusher {
  private readonly upstream: BatchUpstream
  /** false without --upstream and without an upstream of the caller's: readings are only buffered */
  readonly hasUpstream: boolean
  /** set when the upstream is an MQTT broker */
  private readonly mqtt: MqttUpstream | null = null
  private readonly health: UpstreamHealth
  private readonly deliverer: Deliverer
  private readonly oldestAge: OldestAge
  private readonly log: Logger
  private readonly sleeper = new Sleeper()
  /**
   * Partitions waiting out their back-off after a failed request. Each partition backs off
   * on its own (up to retryMaxMs, 30 s), so after an outage the backlog drained one
   * partition at a time, each at the end of its own long wait, although the first answer
   * already showed the upstream was back. A request that gets an answer wakes them all.
   */
  private readonly failedSleeper = new Sleeper()
  private readonly backoffWoken: Counter
  private readonly wakers: Array<(() => void) | null>
  /** when the partition's current batch got its first item (linger), 0: no items seen */
  private readonly firstSeenAt: number[]
  private running = 0
  private readonly slotWaiters: Array<() => void> = []
  private closed = false
  private loops: Promise<void>[] = []

  constructor (private readonly store: Store, private readonly config: FlushConfig, publish: Publisher, metrics: Metrics, logger: Logger, options: FlusherOptions = {}) {
    this.log = logger.child({ component: 'flush' })
    this.backoffWoken = new Counter({ name: 'gateway_upstream_backoff_woken_total', help: 'Partitions whose back-off after a failed request ended early because another partition\'s request was answered (the upstream is back)', registers: [metrics.registry] })
    const mqttEvents = mqttMetrics(metrics, () => this.mqtt?.status())
    this.upstream = options.upstream ?? createUpstream(config, this.log, mqttEvents)
    this.hasUpstream = options.upstream !== undefined || config.upstream.length > 0
    if (this.upstream instanceof MqttUpstream) this.mqtt = this.upstream
    const { compression, batchMaxBytes } = this.upstream.batching
    this.config = { ...config, batchMaxBytes }
    const wire = new WireFormat(config.upstreamProtocol, compression)
    this.health = new UpstreamHealth(this.log, config.unreadyAfterMs)
    const receipts = new ReceiptSender(publish, metrics, this.log, config.receiptFormat)
    this.deliverer = new Deliverer({ store, config: this.config, upstream: this.upstream, wire, health: this.health, receipts, metrics, log: this.log, closed: () => this.closed })
    this.oldestAge = new OldestAge(store, metrics)
    this.wakers = Array.from({ length: store.partitions }, () => null)
    this.firstSeenAt = Array.from({ length: store.partitions }, () => 0)
    store.on('appended', (ps) => {
      const now = performance.now()
      for (const p of ps) {
        if (this.firstSeenAt[p] === 0) this.firstSeenAt[p] = now
        this.wakers[p]?.()
      }
    })
  }

  start (): void {
    if (!this.hasUpstream) {
      this.log.warn('no --upstream configured: readings are buffered, never flushed')
      return
    }
    this.upstream.start()
    for (let p = 0; p < this.store.partitions; p++) this.loops.push(this.loop(p))
    this.oldestAge.start()
  }

  status (): UpstreamStatus & { mqtt?: MqttUpstreamStatus } {
    return { ...this.health.status(this.upstream.url), ...(this.mqtt ? { mqtt: this.mqtt.status() } : {}) }
  }

  /** False while the upstream refuses our token, or has been failing for unreadyAfterMs. */
  get ready (): boolean {
    return this.health.ready
  }

  oldestAgeMs (p: number): number | null {
    return this.oldestAge.ageMs(p)
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
        const pause = this.health.pausedMs
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
          outcome = await this.deliverer.deliver(p, batch.seqs, batch.raws)
        } finally {
          this.store.release(p)
          this.releaseSlot()
        }
        if (outcome.kind === 'failed') {
          // a wait the upstream asked for (Retry-After, a refused token) is kept; our own
          // back-off ends when another partition gets an answer
          if (outcome.waitMs !== undefined) { await this.sleeper.sleep(outcome.waitMs); continue }
          const woken = this.failedSleeper.woken
          await this.failedSleeper.sleep(requestBackoff.next())
          if (this.failedSleeper.woken !== woken) requestBackoff.reset()
          continue
        }
        requestBackoff.reset()
        if (this.failedSleeper.sleeping > 0) {
          this.log.info({ partition: p, waking: this.failedSleeper.sleeping }, 'upstream answered again: partitions in back-off retry now')
          this.backoffWoken.inc(this.failedSleeper.sleeping)
          this.failedSleeper.wake()
        }
        if (outcome.kind === 'retry-items') await this.sleeper.sleep(backoff.next())
        else backoff.reset()
      } catch (err) {
        if (this.closed) break
        this.log.error({ partition: p, err }, 'flush loop error; retrying')
        await this.sleeper.sleep(backoff.next())
      }
    }
  }

  /** Stops the loops; an in-flight request is abandoned (its items stay buffered). */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.oldestAge.stop()
    this.sleeper.wake()
    this.failedSleeper.wake()
    for (const w of this.wakers) w?.()
    for (const r of this.slotWaiters.splice(0)) r()
    await this.upstream.close()
    await Promise.race([Promise.allSettled(this.loops), new Promise((r) => setTimeout(r, 2000).unref())])
  }
}
