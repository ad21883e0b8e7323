/**
 * The flusher: partition buffers -> CBOR batches -> ingest -> per-item acks (upstream
 * protocols v1 and v2, docs/design.md section 6, docs/upstream.md, docs/protocol-v2.md). One loop per partition, at most one batch in flight per
 * partition (order), at most `maxInFlight` partitions sending at once. A batch closes at
 * batchMaxItems, batchMaxBytes or lingerMs after its first item, whichever comes first.
 *
 * This file is the partition loop and the linger; the rest, one concern a file:
 *   deliver.ts         one batch to its answers (bisect/split, pause, backoff)
 *   status-actions.ts  HTTP status -> action table
 *   ack-mapper.ts      per-item results -> delete / retry / dead-letter
 *   receipts.ts, receipt-sender.ts   receipts to devices
 *   health.ts          upstream state for /status and /readyz
 *   oldest-age.ts      the oldest unacked item's age
 *   upstream.ts        the HTTP client and failover; backoff.ts the retry delays
 *   mqtt-upstream.ts   the MQTT client (mqtt:// upstreams, docs/upstream-mqtt.md), same surface;
 *                      mqtt-results.ts how much of a results message it reads,
 *                      mqtt-config.ts its flags, mqtt-metrics.ts its metrics
 */
import type { Logger } from 'pino'
import { Counter } from 'prom-client'
import type { Metrics } from '../metrics/index.ts'
import type { Store } from '../store/index.ts'
import { Backoff, Sleeper } from './backoff.ts'
import type { FlushConfig } from './config.ts'
import { Deliverer, type BatchUpstream, type Outcome } from './deliver.ts'
import { UpstreamHealth, type UpstreamStatus } from './health.ts'
import { OldestAge } from './oldest-age.ts'
import { ReceiptSender, type Publisher } from './receipt-sender.ts'
import { isMqttUrl } from './mqtt-config.ts'
import { mqttMetrics } from './mqtt-metrics.ts'
import { MqttUpstream, type MqttUpstreamStatus } from './mqtt-upstream.ts'
import { Upstream } from './upstream.ts'
import { WireFormat, type CompressionChoice } from './wire.ts'

export type { FlushConfig } from './config.ts'
export type { UpstreamState, UpstreamStatus } from './health.ts'

export class Flusher {
  private readonly upstream: BatchUpstream & { close: () => void | Promise<void> }
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

  constructor (private readonly store: Store, private readonly config: FlushConfig, publish: Publisher, metrics: Metrics, logger: Logger) {
    this.log = logger.child({ component: 'flush' })
    this.backoffWoken = new Counter({ name: 'gateway_upstream_backoff_woken_total', help: 'Partitions whose back-off after a failed request ended early because another partition\'s request was answered (the upstream is back)', registers: [metrics.registry] })
    const mqttEvents = mqttMetrics(metrics, () => this.mqtt?.status())
    let compression: CompressionChoice = config.gzip ? 'gzip' : config.compression
    if (config.upstream.length > 0 && config.upstream.every(isMqttUrl)) {
      this.mqtt = new MqttUpstream({
        urls: config.upstream,
        gatewayId: config.gatewayId,
        ackMode: config.upstreamAck,
        topic: config.upstreamTopic,
        resultsTopic: config.upstreamResultsTopic,
        maxMessageBytes: config.upstreamMaxMessageBytes,
        resultsTimeoutMs: config.resultsTimeoutMs,
        publishTimeoutMs: config.requestTimeoutMs,
        clientId: config.upstreamClientId || `gw-${config.gatewayId}`,
        username: config.upstreamUsername || config.gatewayId,
        password: config.token,
        ...(config.upstreamTls ? { tls: config.upstreamTls } : {}),
        alpn: config.upstreamAlpn,
        protocolVersion: config.upstreamMqttVersion === '5' ? 5 : 4,
        reconnectMs: config.upstreamReconnectMs,
        acceptNoSubscribers: config.upstreamAcceptNoSubscribers,
        batchMaxItems: config.batchMaxItems,
        // PUBLISHes waiting for their PUBACK: twice the partitions sending at once (results may overtake a PUBACK)
        maxUnackedBatches: 2 * config.maxInFlight,
        maxUnackedBytes: 2 * config.maxInFlight * config.upstreamMaxMessageBytes
      }, this.log, mqttEvents)
      this.upstream = this.mqtt
      // auto: plain CBOR for any consumer of the broker ack; for our own consumer (results)
      // gzip, or br once its results say it takes br (MQTT 5 user properties, as the HTTP
      // headers: wire.ts); MQTT 3.1.1 has no properties to mark br with, so gzip
      if (compression === 'auto' && config.upstreamAck === 'broker') compression = 'none'
      if (compression === 'auto' && config.upstreamMqttVersion !== '5') compression = 'gzip'
      // a batch's items fit in one PUBLISH (the envelope takes a few hundred bytes)
      this.config = { ...config, batchMaxBytes: Math.min(config.batchMaxBytes, Math.max(256, config.upstreamMaxMessageBytes - 512)) }
    } else {
      this.upstream = new Upstream({ urls: config.upstream, token: config.token, timeoutMs: config.requestTimeoutMs, maxSockets: config.maxInFlight, spread: config.upstreamSpread, tls: config.upstreamTls })
    }
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
    if (this.config.upstream.length === 0) {
      this.log.warn('no --upstream configured: readings are buffered, never flushed')
      return
    }
    this.mqtt?.start()
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
