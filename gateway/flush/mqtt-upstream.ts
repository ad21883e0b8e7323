/**
 * The MQTT upstream (`--upstream mqtt://` or `mqtts://`, docs/upstream-mqtt.md): the
 * BatchUpstream of answer.ts over a cloud broker, as http-upstream.ts is over HTTP, so
 * deliver.ts and the ack mapper run unchanged. What it hears (a PUBACK and its MQTT 5 reason
 * code, a results message, a timeout) becomes an Answer here; no HTTP status is made up.
 *
 * One MQTT.js connection, QoS 1, a persistent session (clean=false, stable client id
 * `gw-{gatewayId}`): results published while the gateway is offline wait at the broker.
 * A batch is one PUBLISH of the HTTP request body (compressed as wire.ts says) to the batch
 * topic of its partition. What counts as the answer depends on `--upstream-ack`:
 *
 *   broker   the PUBACK: every item answered stored (the consumer dedups by the batch's
 *            (gateway, epoch, partition, seq), as the ingest does).
 *   results  the consumer's results message on the results topic for this batch id: the
 *            per-item results, or a whole-batch status, read with the HTTP status table
 *            (status-actions.ts) since it means what that status means over HTTP. No results within resultsTimeoutMs:
 *            no answer (backoff, then the items go again in a new batch; the consumer
 *            answers duplicate for those it stored). Results for a batch id not waited for
 *            (late, unknown, an earlier epoch's) are counted and ignored, like late HTTP acks.
 *            A results message's MQTT 5 user properties `ingest-protocols` and
 *            `ingest-encodings` are read as the HTTP headers of those names: a consumer
 *            that lists 2 gets protocol v2 batches, one that lists br brotli (auto; marked
 *            by the user property content-encoding, as br has no magic bytes).
 *
 * A payload above `maxMessageBytes` is refused as too large without being sent, so deliver.ts
 * splits the batch (the flusher also caps a batch's item bytes below it: `batching`); an
 * MQTT 5 PUBACK reason code is a refusal (REASON_REFUSALS: not authorized, packet too large,
 * quota exceeded, other errors busy). While not connected (or, in results mode, before the results subscription
 * is granted) a send gets no answer at once: MQTT.js must not queue batches during an outage.
 *
 * A PUBACK with reason 0x10 (no matching subscribers) means the broker delivered the batch
 * to nobody: in either mode it is refused as no consumer (kept, sent again after back-off), counted,
 * and /status says no consumer is subscribed. A broker that discards it after its PUBACK
 * loses it otherwise: deleting it on that PUBACK lost every reading of a broker restarted
 * without the consumer's session. `acceptNoSubscribers` (broker mode, an operator's explicit
 * opt-in) takes such a PUBACK as delivered, for brokers whose rules consume without
 * subscribing and still answer 0x10.
 *
 * Unacknowledged PUBLISHes are bounded. MQTT.js keeps every QoS 1 PUBLISH in its outgoing
 * store until its PUBACK (clean=false: it resends them on reconnect), whatever became of
 * the send that made it; a broker that never PUBACKs, with a new batch sent after each
 * results timeout, grew that store (and RSS) without bound. So `unacked` mirrors the store
 * (a batch enters before its publish, leaves when MQTT.js calls back: PUBACK or the
 * connection ended for good), and a send fails at once while its partition still has a
 * PUBLISH there that was not answered (its items would be there twice) or while the store holds
 * `maxUnackedBatches` batches or `maxUnackedBytes` bytes.
 *
 * Results messages are read as mqtt-results.ts says: the batch id first, then bounds from
 * the batch it answers, then the whole message.
 */
import type { Logger } from 'pino'
import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient, type Packet } from 'mqtt'
import { CONTENT_ENCODING, ENCODINGS_HEADER, PROTOCOLS_HEADER, UpstreamError, decodeResultsHeader, fillTopic, AckCode } from '../../protocol/index.ts'
import type { AckResult } from './ack-mapper.ts'
import { Refusal, type Answer, type BatchUpstream, type OutgoingBatch } from './answer.ts'
import { isAuthRefusal, NO_MATCHING_SUBSCRIBERS, persistentClientOptions, type MqttClientFields } from './mqtt-client.ts'
import { maxResultsPacketBytes, screenResults, type ResultsRefusal } from './mqtt-results.ts'
import { refusalOf } from './status-actions.ts'
import { compress, decodeAnswer, type CompressionChoice, type Wire } from './wire.ts'
import { noDelay } from '../../common/mqtt-nodelay.ts'

/** The client's fields (mqtt-client.ts) but its connect timeout, which follows the PUBACK timeout. */
export type MqttUpstreamConfig = Omit<MqttClientFields, 'connectTimeoutMs'> & {
  gatewayId: string
  ackMode: 'broker' | 'results'
  topic: string
  resultsTopic: string
  maxMessageBytes: number
  resultsTimeoutMs: number
  /** how long to wait for a PUBACK */
  publishTimeoutMs: number
  /** broker mode: a PUBACK 0x10 (no matching subscribers) deletes the batch (an explicit opt-in: it may lose batches) */
  acceptNoSubscribers: boolean
  /** the most items a batch has: bounds the results message the broker may send us (MQTT 5 maximum packet size) */
  batchMaxItems: number
  /** at most this many batches, and bytes, in MQTT.js's store waiting for their PUBACK */
  maxUnackedBatches: number
  maxUnackedBytes: number
  /** the --compression flag (--gzip already folded in): `auto` is resolved for the broker here */
  compression: CompressionChoice
  /** the --batch-max-bytes flag: capped here so a batch's items fit in one PUBLISH */
  batchMaxBytes: number
  /** makes the client (default MQTT.js `connect`; the acknowledgment-path simulation passes a model broker) */
  connect?: (opts: IClientOptions) => MqttClient
}

/** What the metrics hear of: a results message ignored (and why), a PUBACK saying nobody is subscribed. */
export type MqttUpstreamEvents = { ignored: (reason: ResultsRefusal) => void, noSubscribers: () => void }

export type MqttUpstreamStatus = {
  ack: 'broker' | 'results'
  connected: boolean
  subscribed: boolean
  inFlight: number
  oldestUnansweredMs: number | null
  lateResults: number
  badResults: number
  /** results refused unread: larger than, or more entries than, the batch they answer could have */
  refusedResults: number
  /** the last PUBACK said "no matching subscribers" (MQTT 5 0x10): no consumer subscribed */
  noSubscribers: boolean
  /** batches a PUBACK said reached no subscriber, since start */
  noSubscriberBatches: number
  /** PUBLISHes held by MQTT.js waiting for their PUBACK, and their payload bytes */
  unacked: number
  unackedBytes: number
}

type Pending = { resolve: (a: Answer) => void, timer: NodeJS.Timeout, sentAt: number, sentBytes: number, url: string, items: number, wire: Wire }
/** answered: its results came before its PUBACK (a broker may route faster than it acknowledges) */
type Unacked = { partition: number, bytes: number, sentAt: number, answered: boolean }

/**
 * MQTT 5 reason codes of a refused PUBLISH [MQTT-3.4.2.1]: why, and the label the metrics
 * have always counted it under. Any other code: busy, '503'.
 */
const REASON_REFUSALS: Readonly<Record<number, { reason: Refusal, label: string }>> = {
  135: { reason: Refusal.Auth, label: '403' }, // not authorized
  149: { reason: Refusal.TooLarge, label: '413' }, // packet too large
  151: { reason: Refusal.Busy, label: '429' }, // quota exceeded
  150: { reason: Refusal.Busy, label: '429' }, // message rate too high
  137: { reason: Refusal.Busy, label: '503' }, // server busy
  131: { reason: Refusal.Busy, label: '503' }, // implementation specific error
  128: { reason: Refusal.Busy, label: '503' }, // unspecified error
  144: { reason: Refusal.Unreadable, label: '400' }, // topic name invalid
  153: { reason: Refusal.Unreadable, label: '400' } // payload format invalid
}
const OTHER_REASON = { reason: Refusal.Busy, label: '503' } as const

/** Why a PUBACK with this MQTT 5 reason code refused the batch, and its metrics label. */
export function pubackRefusal (code: number): { reason: Refusal, label: string } {
  return REASON_REFUSALS[code] ?? OTHER_REASON
}

export class MqttUpstream implements BatchUpstream {
  private client: MqttClient | null = null
  private readonly pending = new Map<string, Pending>()
  private subscribed = false
  private closed = false
  /** message ids whose PUBACK said 0x10, no matching subscribers (MQTT.js hands the callback the PUBLISH, not the PUBACK) */
  private readonly unrouted = new Set<number>()
  /** why the last connection attempt failed ('' after a CONNACK that accepted us) */
  private connError = ''
  /** the broker refused our credentials (CONNACK 4/5, MQTT 5 0x86/0x87) */
  private authRefused = false
  /** the last PUBACK said no matching subscribers (warned once, until a PUBACK says otherwise) */
  private noSubscribers = false
  private noSubscriberBatches = 0
  /** batch id -> a PUBLISH of ours in MQTT.js's outgoing store, not PUBACKed yet */
  private readonly unacked = new Map<string, Unacked>()
  private unackedBytes = 0
  private lateResults = 0
  private badResults = 0
  private refusedResults = 0
  private readonly log: Logger
  readonly batching: { compression: CompressionChoice, batchMaxBytes: number }

  constructor (private readonly config: MqttUpstreamConfig, log: Logger, private readonly events: MqttUpstreamEvents = { ignored: () => {}, noSubscribers: () => {} }) {
    this.log = log.child({ upstream: 'mqtt' })
    // auto: plain CBOR for any consumer of the broker ack; for our own consumer (results)
    // gzip, or br once its results say it takes br (MQTT 5 user properties, as the HTTP
    // headers: wire.ts); MQTT 3.1.1 has no properties to mark br with, so gzip
    let compression = config.compression
    if (compression === 'auto' && config.ackMode === 'broker') compression = 'none'
    if (compression === 'auto' && config.protocolVersion !== 5) compression = 'gzip'
    // a batch's items fit in one PUBLISH (the envelope takes a few hundred bytes)
    this.batching = { compression, batchMaxBytes: Math.min(config.batchMaxBytes, Math.max(256, config.maxMessageBytes - 512)) }
  }

  /** The broker URL of the current connection (else the first one). */
  get url (): string {
    const o = this.client?.options
    return o?.host ? `${o.protocol ?? 'mqtt'}://${o.host}:${o.port ?? ''}` : this.config.urls[0] ?? ''
  }

  pick (_p: number): string { return this.url }
  /** MQTT.js moves to the next broker URL when it reconnects. */
  failover (_p = 0): void {}

  start (): void {
    if (this.client || this.closed) return
    const c = this.config
    // [MQTT-3.1.2-24] the broker sends nothing larger than maximumPacketSize: no results
    // message longer than the answer to our largest batch (mqtt-results.ts)
    const opts = persistentClientOptions({ ...c, connectTimeoutMs: Math.min(30_000, c.publishTimeoutMs) },
      { sessionExpiryInterval: 7 * 24 * 3600, maximumPacketSize: maxResultsPacketBytes(c.batchMaxItems) })
    const client = (c.connect ?? mqtt.connect)(opts)
    this.client = client
    client.on('connect', (connack) => {
      noDelay(client)
      this.connError = ''
      this.authRefused = false
      this.log.info({ url: this.url, sessionPresent: connack.sessionPresent }, 'connected to the upstream broker')
      if (c.ackMode === 'results') this.subscribeResults(client)
    })
    client.on('close', () => { this.subscribed = false })
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback' && packet.reasonCode === NO_MATCHING_SUBSCRIBERS && packet.messageId !== undefined) this.unrouted.add(packet.messageId)
    })
    client.on('error', (err) => {
      // MQTT.js retries every second: log a failure when it changes, not at every attempt
      if (err.message !== this.connError) this.log.warn({ err, url: this.url }, 'upstream broker connection error')
      this.connError = err.message
      this.authRefused = isAuthRefusal(err)
    })
    client.on('message', (topic, payload, packet) => { if (topic === this.resultsTopic) this.onResults(payload, packet.properties?.userProperties) })
  }

  private get resultsTopic (): string { return fillTopic(this.config.resultsTopic, this.config.gatewayId) }

  private subscribeResults (client: MqttClient): void {
    client.subscribe(this.resultsTopic, { qos: 1 }, (err, granted) => {
      const g = granted?.[0]
      if (err || !g || g.qos > 2) {
        this.log.error({ err, topic: this.resultsTopic, granted: g?.qos }, 'the broker refused our results subscription; nothing can be answered')
        return
      }
      this.subscribed = true
    })
  }

  /** One PUBLISH; never rejects: what went wrong is no answer. */
  async send (batch: OutgoingBatch): Promise<Answer> {
    try {
      return await this.publish(batch)
    } catch (err) {
      return { kind: 'none', error: err as Error }
    }
  }

  private async publish ({ body, wire, url, batchId, partition, seqs }: OutgoingBatch): Promise<Answer> {
    const c = this.config
    const payload = await compress(body, wire.encoding)
    const refused = (reason: Refusal, label: string, message: string, sentBytes = 0): Answer => ({ kind: 'refused', reason, label, message, url, sentBytes })
    if (payload.length > c.maxMessageBytes) {
      return refused(Refusal.TooLarge, '413', `too_large: payload of ${payload.length} bytes exceeds --upstream-max-message-bytes ${c.maxMessageBytes}`)
    }
    const client = this.client
    // refused credentials pause flushing, as over HTTP: /readyz says why, nothing is dead-lettered
    if (client && !client.connected && this.authRefused) return refused(Refusal.Auth, '401', `not_authorized: the broker refused our credentials: ${this.connError}`)
    if (this.closed || !client || !client.connected) throw new UpstreamError(`not connected to the upstream broker ${this.url}${this.connError ? `: ${this.connError}` : ''}`, { status: 0 })
    if (c.ackMode === 'results' && !this.subscribed) throw new UpstreamError(`not subscribed to ${this.resultsTopic} at ${this.url} yet`, { status: 0 })
    this.checkUnacked(partition, payload.length)
    const topic = fillTopic(c.topic, c.gatewayId, partition)
    const opts: IClientPublishOptions = { qos: 1 }
    // MQTT 5: the batch id as correlation data, so even a batch whose envelope cannot be read can be answered
    // and the compression as a user property (br has no magic bytes to sniff: docs/upstream-mqtt.md)
    if (c.protocolVersion === 5) {
      opts.properties = { correlationData: Buffer.from(batchId), contentType: 'application/cbor', ...(wire.encoding !== 'identity' ? { userProperties: { [CONTENT_ENCODING]: wire.encoding } } : {}) }
    }
    return await new Promise<Answer>((resolve) => {
      let settled = false
      const done = (a: Answer): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.pending.delete(batchId)
        resolve(a)
      }
      const waitMs = c.ackMode === 'results' ? c.resultsTimeoutMs : c.publishTimeoutMs
      const silence = c.ackMode === 'results' ? `no results for batch ${batchId} within ${waitMs} ms` : `no PUBACK from ${this.url} within ${waitMs} ms`
      const timer = setTimeout(() => done({ kind: 'none', error: new UpstreamError(silence, { status: 0 }) }), waitMs)
      this.pending.set(batchId, { resolve: done, timer, sentAt: performance.now(), sentBytes: payload.length, url, items: seqs.length, wire })
      this.unacked.set(batchId, { partition, bytes: payload.length, sentAt: performance.now(), answered: false })
      this.unackedBytes += payload.length
      client.publish(topic, payload, opts, (err, packet?: Packet) => {
        // MQTT.js calls back once the PUBLISH has left its store (PUBACK, or the connection ended for good)
        this.releaseUnacked(batchId)
        if (err) {
          const code = (err as Error & { code?: unknown }).code
          if (typeof code !== 'number') done({ kind: 'none', error: new UpstreamError(`publish to ${this.url} failed: ${err.message}`, { status: 0, cause: err }) })
          else {
            const r = pubackRefusal(code)
            done(refused(r.reason, r.label, `puback_refused: the broker refused the batch: ${err.message} (reason code ${String(code)})`, payload.length))
          }
          return
        }
        const id = (packet as { messageId?: number } | undefined)?.messageId
        const unrouted = id !== undefined && this.unrouted.delete(id)
        this.heardPuback(unrouted, topic)
        if (unrouted && !(c.ackMode === 'broker' && c.acceptNoSubscribers)) {
          // nobody got it: a broker discards such a message, so the batch is kept and sent
          // again after back-off (and in results mode no results will come either)
          done(refused(Refusal.NoConsumer, '503', `no_consumer: no consumer is subscribed to ${topic}`, payload.length))
        } else if (c.ackMode === 'broker') {
          const results: AckResult[] = seqs.map((s) => [partition, s, AckCode.Stored])
          done({ kind: 'results', results, url, sentBytes: payload.length })
        }
        // results mode: the PUBACK only says the broker has it; the results message answers
      })
    })
  }

  /**
   * Refuses a send whose PUBLISH MQTT.js would hold beside an unacknowledged one of the same
   * partition (its items would be there twice), or beyond the bounds of the store.
   */
  private checkUnacked (partition: number, bytes: number): void {
    const c = this.config
    for (const u of this.unacked.values()) {
      if (u.partition === partition && !u.answered) throw new UpstreamError(`${this.url} has not acknowledged the previous batch of partition ${partition} (sent ${Math.round(performance.now() - u.sentAt)} ms ago): not sending its items again before it does`, { status: 0 })
    }
    if (this.unacked.size >= c.maxUnackedBatches || this.unackedBytes + bytes > c.maxUnackedBytes) {
      throw new UpstreamError(`${this.url} has not acknowledged ${this.unacked.size} batches (${this.unackedBytes} bytes): no more until it does`, { status: 0 })
    }
  }

  private releaseUnacked (batchId: string): void {
    const u = this.unacked.get(batchId)
    if (!u) return
    this.unacked.delete(batchId)
    this.unackedBytes -= u.bytes
  }

  /** A PUBACK (MQTT 5 reason 0x10 or not): counts "no matching subscribers", warns once until a PUBACK says otherwise. */
  private heardPuback (unrouted: boolean, topic: string): void {
    if (unrouted) {
      this.noSubscriberBatches++
      this.events.noSubscribers()
      const keep = !(this.config.ackMode === 'broker' && this.config.acceptNoSubscribers)
      if (!this.noSubscribers) this.log.warn({ topic, kept: keep }, keep ? 'no consumer is subscribed to our batches: the broker delivered this one to nobody; keeping it and sending it again (said once until one is)' : 'no consumer is subscribed to our batches; deleting them anyway (--upstream-accept-no-subscribers; said once until one is)')
    } else if (this.noSubscribers) this.log.info({ topic }, 'a consumer is subscribed to our batches again')
    this.noSubscribers = unrouted
  }

  private ignore (reason: ResultsRefusal, fields: Record<string, unknown>, msg: string, level: 'debug' | 'warn'): void {
    if (reason === 'late') this.lateResults++
    else if (reason === 'unreadable') this.badResults++
    else this.refusedResults++
    this.events.ignored(reason)
    this.log[level]({ reason, ...fields }, msg)
  }

  /** A results message: untrusted (any client with publish rights there may send one). Never throws. */
  private onResults (payload: Buffer, userProperties?: Record<string, string | string[]>): void {
    let largest = 0
    for (const p of this.pending.values()) largest = Math.max(largest, p.items)
    const verdict = screenResults(payload, (batch) => this.pending.get(batch)?.items, largest)
    if (verdict.refuse === 'late') {
      this.ignore('late', { batch: verdict.batch }, 'results for a batch not waited for (late, or an earlier run\'s) ignored', 'debug')
      return
    }
    if (verdict.refuse !== null) {
      this.ignore(verdict.refuse, { batch: verdict.batch, bytes: payload.length, why: verdict.why }, 'results message refused unread', 'warn')
      return
    }
    let h
    try {
      h = decodeResultsHeader(payload)
    } catch (err) {
      this.ignore('unreadable', { err, bytes: payload.length }, 'unreadable results message ignored', 'warn')
      return
    }
    const p = this.pending.get(h.batch)
    if (!p) {
      this.ignore('late', { batch: h.batch }, 'results for a batch not waited for (late, or an earlier run\'s) ignored', 'debug')
      return
    }
    // MQTT 5 user properties stand for the HTTP answer's headers: `ingest-protocols: 1, 2`
    // lets wire.ts move this upstream to protocol v2, as over HTTP
    const offers: Record<string, string> = {}
    for (const [k, v] of Object.entries(userProperties ?? {})) if (k === PROTOCOLS_HEADER || k === ENCODINGS_HEADER) offers[k] = String(Array.isArray(v) ? v[0] : v).slice(0, 100)
    const u = this.unacked.get(h.batch)
    if (u) u.answered = true
    const heard = { url: p.url, sentBytes: p.sentBytes, offers }
    if (h.status !== 200) {
      p.resolve({ ...heard, kind: 'refused', reason: refusalOf(h.status), label: String(h.status), message: `${h.error}: ${h.message}`, ...(h.retryAfterMs !== undefined ? { retryAfterMs: h.retryAfterMs } : {}) })
      return
    }
    try {
      p.resolve({ ...heard, kind: 'results', results: decodeAnswer(p.wire, payload).results })
    } catch (err) {
      p.resolve({ ...heard, kind: 'garbled', error: new Error(`unreadable 200 response from ${p.url}: ${(err as Error).message}`, { cause: err }) })
    }
  }

  status (): MqttUpstreamStatus {
    let oldest: number | null = null
    for (const p of this.pending.values()) oldest = oldest === null ? p.sentAt : Math.min(oldest, p.sentAt)
    return {
      ack: this.config.ackMode,
      connected: this.client?.connected ?? false,
      subscribed: this.subscribed,
      inFlight: this.pending.size,
      oldestUnansweredMs: oldest === null ? null : Math.round(performance.now() - oldest),
      lateResults: this.lateResults,
      badResults: this.badResults,
      refusedResults: this.refusedResults,
      noSubscribers: this.noSubscribers,
      noSubscriberBatches: this.noSubscriberBatches,
      unacked: this.unacked.size,
      unackedBytes: this.unackedBytes
    }
  }

  /** Ends the connection; waiting sends fail (their items stay buffered). Idempotent. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const p of [...this.pending.values()]) p.resolve({ kind: 'none', error: new UpstreamError('the upstream is closing', { status: 0 }) })
    const client = this.client
    if (client) await client.endAsync(true).catch(() => {})
  }
}
