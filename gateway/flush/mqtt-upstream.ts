/**
 * The MQTT upstream (`--upstream mqtt://` or `mqtts://`, docs/upstream-mqtt.md): the same
 * "send a batch, get an answer" surface as the HTTP client (upstream.ts), so deliver.ts, the
 * status table and the ack mapper run unchanged over a cloud broker.
 *
 * One MQTT.js connection, QoS 1, a persistent session (clean=false, stable client id
 * `gw-{gatewayId}`): results published while the gateway is offline wait at the broker.
 * A batch is one PUBLISH of the HTTP request body (compressed as wire.ts says) to the batch
 * topic of its partition. What counts as the answer depends on `--upstream-ack`:
 *
 *   broker   the PUBACK: every item answered stored (the consumer dedups by the batch's
 *            (gateway, epoch, partition, seq), as the ingest does).
 *   results  the consumer's results message on the results topic for this batch id: the
 *            HTTP answer body, or a whole-batch status. No results within resultsTimeoutMs:
 *            no answer (backoff, then the items go again in a new batch; the consumer
 *            answers duplicate for those it stored). Results for a batch id not waited for
 *            (late, unknown, an earlier epoch's) are counted and ignored, like late HTTP acks.
 *            A results message's MQTT 5 user properties `ingest-protocols` and
 *            `ingest-encodings` are read as the HTTP headers of those names: a consumer
 *            that lists 2 gets protocol v2 batches, one that lists br brotli (auto; marked
 *            by the user property content-encoding, as br has no magic bytes).
 *
 * A payload above `maxMessageBytes` is answered 413 without being sent, so deliver.ts
 * splits the batch; an MQTT 5 PUBACK reason code is mapped to the HTTP status with the
 * same meaning (not authorized 403, packet too large 413, quota exceeded 429, other
 * errors 503). While not connected (or, in results mode, before the results subscription
 * is granted) a send fails at once: MQTT.js must not queue batches during an outage.
 *
 * A PUBACK with reason 0x10 (no matching subscribers) means the broker delivered the batch
 * to nobody: in either mode it is answered 503 (kept, sent again after back-off), counted,
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
import { CONTENT_ENCODING, ENCODINGS_HEADER, PROTOCOLS_HEADER, UpstreamError, decodeResultsHeader, encodeResponse, encodeResponseV2, fillTopic, AckCode, type ItemResult } from '../../protocol/index.ts'
import { maxResultsPacketBytes, screenResults, type ResultsRefusal } from './mqtt-results.ts'
import type { UpstreamResponse, UpstreamTls } from './upstream.ts'
import { compress, type Wire } from './wire.ts'
import { noDelay } from '../../common/mqtt-nodelay.ts'

export type BatchMeta = { batchId: string, partition: number, seqs: readonly number[] }
export type SendResult = UpstreamResponse & { sentBytes: number }

export type MqttUpstreamConfig = {
  urls: string[]
  gatewayId: string
  ackMode: 'broker' | 'results'
  topic: string
  resultsTopic: string
  maxMessageBytes: number
  resultsTimeoutMs: number
  /** how long to wait for a PUBACK */
  publishTimeoutMs: number
  clientId: string
  username: string
  /** '' = none */
  password: string
  tls?: UpstreamTls
  alpn: string[]
  protocolVersion: 4 | 5
  /** wait between connection attempts */
  reconnectMs: number
  /** broker mode: a PUBACK 0x10 (no matching subscribers) deletes the batch (an explicit opt-in: it may lose batches) */
  acceptNoSubscribers: boolean
  /** the most items a batch has: bounds the results message the broker may send us (MQTT 5 maximum packet size) */
  batchMaxItems: number
  /** at most this many batches, and bytes, in MQTT.js's store waiting for their PUBACK */
  maxUnackedBatches: number
  maxUnackedBytes: number
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

type Pending = { resolve: (r: SendResult) => void, reject: (e: Error) => void, timer: NodeJS.Timeout, sentAt: number, sentBytes: number, url: string, items: number }
/** answered: its results came before its PUBACK (a broker may route faster than it acknowledges) */
type Unacked = { partition: number, bytes: number, sentAt: number, answered: boolean }

/** MQTT 5 reason codes of a refused PUBLISH -> the HTTP status with the same meaning (status-actions.ts). */
const REASON_STATUS: Readonly<Record<number, number>> = { 135: 403, 149: 413, 151: 429, 150: 429, 137: 503, 131: 503, 128: 503, 144: 400, 153: 400 }

const NO_MATCHING_SUBSCRIBERS = 16

export class MqttUpstream {
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
  /** the negotiation header of the last results message: answers made up here repeat it, so they do not undo the negotiation */
  private heard: Record<string, string> = {}
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

  constructor (private readonly config: MqttUpstreamConfig, log: Logger, private readonly events: MqttUpstreamEvents = { ignored: () => {}, noSubscribers: () => {} }) {
    this.log = log.child({ upstream: 'mqtt' })
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
    const servers = c.urls.map((u) => {
      const url = new URL(u)
      const tls = url.protocol === 'mqtts:'
      return { host: url.hostname, port: Number(url.port || (tls ? 8883 : 1883)), protocol: tls ? 'mqtts' as const : 'mqtt' as const }
    })
    const opts: IClientOptions = {
      ...servers[0],
      servers,
      clientId: c.clientId,
      clean: false, // [MQTT-3.1.2-4] the session (our results subscription, its queued messages) outlives a connection
      protocolVersion: c.protocolVersion,
      // [MQTT-3.1.2-24] the broker sends nothing larger than maximumPacketSize: no results
      // message longer than the answer to our largest batch (mqtt-results.ts)
      ...(c.protocolVersion === 5 ? { properties: { sessionExpiryInterval: 7 * 24 * 3600, maximumPacketSize: maxResultsPacketBytes(c.batchMaxItems) } } : {}),
      reconnectPeriod: c.reconnectMs,
      connectTimeout: Math.min(30_000, c.publishTimeoutMs),
      keepalive: 30,
      resubscribe: false,
      ...(c.password !== '' ? { username: c.username, password: c.password } : {}),
      ...(c.tls?.ca ? { ca: c.tls.ca } : {}),
      ...(c.tls?.cert ? { cert: c.tls.cert, key: c.tls.key } : {}),
      ...(c.alpn.length ? { ALPNProtocols: c.alpn } : {}),
      rejectUnauthorized: true
    }
    const client = mqtt.connect(opts)
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
      const code = (err as Error & { code?: unknown }).code
      this.authRefused = code === 4 || code === 5 || code === 134 || code === 135
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

  async send (body: Buffer, wire: Wire, base: string, meta: BatchMeta): Promise<SendResult> {
    const c = this.config
    const payload = await compress(body, wire.encoding)
    const answer = (status: number, b: Buffer, retryAfterMs?: number): SendResult => ({ status, body: b, retryAfterMs, url: base, headers: this.heard, sentBytes: 0 })
    if (payload.length > c.maxMessageBytes) {
      return answer(413, jsonError('too_large', `payload of ${payload.length} bytes exceeds --upstream-max-message-bytes ${c.maxMessageBytes}`))
    }
    const client = this.client
    // refused credentials are a 401, as over HTTP: flushing pauses, /readyz says why, nothing is dead-lettered
    if (client && !client.connected && this.authRefused) return answer(401, jsonError('not_authorized', `the broker refused our credentials: ${this.connError}`))
    if (this.closed || !client || !client.connected) throw new UpstreamError(`not connected to the upstream broker ${this.url}${this.connError ? `: ${this.connError}` : ''}`, { status: 0 })
    if (c.ackMode === 'results' && !this.subscribed) throw new UpstreamError(`not subscribed to ${this.resultsTopic} at ${this.url} yet`, { status: 0 })
    this.checkUnacked(meta.partition, payload.length)
    const topic = fillTopic(c.topic, c.gatewayId, meta.partition)
    const opts: IClientPublishOptions = { qos: 1 }
    // MQTT 5: the batch id as correlation data, so even a batch whose envelope cannot be read can be answered
    // and the compression as a user property (br has no magic bytes to sniff: docs/upstream-mqtt.md)
    if (c.protocolVersion === 5) {
      opts.properties = { correlationData: Buffer.from(meta.batchId), contentType: 'application/cbor', ...(wire.encoding !== 'identity' ? { userProperties: { [CONTENT_ENCODING]: wire.encoding } } : {}) }
    }
    return await new Promise<SendResult>((resolve, reject) => {
      let settled = false
      const done = (fn: () => void): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.pending.delete(meta.batchId)
        fn()
      }
      const waitMs = c.ackMode === 'results' ? c.resultsTimeoutMs : c.publishTimeoutMs
      const timer = setTimeout(() => done(() => reject(new UpstreamError(
        c.ackMode === 'results' ? `no results for batch ${meta.batchId} within ${waitMs} ms` : `no PUBACK from ${this.url} within ${waitMs} ms`, { status: 0 }))), waitMs)
      this.pending.set(meta.batchId, {
        resolve: (r) => done(() => resolve(r)),
        reject: (e) => done(() => reject(e)),
        timer,
        sentAt: performance.now(),
        sentBytes: payload.length,
        url: base,
        items: meta.seqs.length
      })
      this.unacked.set(meta.batchId, { partition: meta.partition, bytes: payload.length, sentAt: performance.now(), answered: false })
      this.unackedBytes += payload.length
      client.publish(topic, payload, opts, (err, packet?: Packet) => {
        // MQTT.js calls back once the PUBLISH has left its store (PUBACK, or the connection ended for good)
        this.releaseUnacked(meta.batchId)
        if (err) {
          const code = (err as Error & { code?: unknown }).code
          const status = typeof code === 'number' ? REASON_STATUS[code] ?? 503 : undefined
          if (status === undefined) done(() => reject(new UpstreamError(`publish to ${this.url} failed: ${err.message}`, { status: 0, cause: err })))
          else done(() => resolve({ ...answer(status, jsonError('puback_refused', `the broker refused the batch: ${err.message} (reason code ${String(code)})`)), sentBytes: payload.length }))
          return
        }
        const id = (packet as { messageId?: number } | undefined)?.messageId
        const unrouted = id !== undefined && this.unrouted.delete(id)
        this.heardPuback(unrouted, topic)
        if (unrouted && !(c.ackMode === 'broker' && c.acceptNoSubscribers)) {
          // nobody got it: a broker discards such a message, so the batch is kept and sent
          // again after back-off (and in results mode no results will come either)
          done(() => resolve({ ...answer(503, jsonError('no_consumer', `no consumer is subscribed to ${topic}`)), sentBytes: payload.length }))
        } else if (c.ackMode === 'broker') {
          const results: ItemResult[] = meta.seqs.map((s) => [meta.partition, s, AckCode.Stored])
          const b = wire.version === 2 ? encodeResponseV2({ batch: meta.batchId, results }) : encodeResponse({ batch: meta.batchId, results })
          done(() => resolve({ ...answer(200, b), sentBytes: payload.length }))
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
    const body = h.status === 200 ? payload : jsonError(h.error, h.message)
    // MQTT 5 user properties stand for the HTTP answer's headers: `ingest-protocols: 1, 2`
    // lets wire.ts move this upstream to protocol v2, as over HTTP
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(userProperties ?? {})) if (k === PROTOCOLS_HEADER || k === ENCODINGS_HEADER) headers[k] = String(Array.isArray(v) ? v[0] : v).slice(0, 100)
    this.heard = headers
    const u = this.unacked.get(h.batch)
    if (u) u.answered = true
    p.resolve({ status: h.status, body, retryAfterMs: h.retryAfterMs, url: p.url, headers, sentBytes: p.sentBytes })
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
    for (const p of [...this.pending.values()]) p.reject(new UpstreamError('the upstream is closing', { status: 0 }))
    const client = this.client
    if (client) await client.endAsync(true).catch(() => {})
  }
}

function jsonError (error: string, message: string): Buffer {
  return Buffer.from(JSON.stringify({ error, message }))
}
