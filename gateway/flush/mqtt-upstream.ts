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
 */
import type { Logger } from 'pino'
import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient, type Packet } from 'mqtt'
import { CONTENT_ENCODING, ENCODINGS_HEADER, PROTOCOLS_HEADER, UpstreamError, decodeResultsHeader, encodeResponse, encodeResponseV2, fillTopic, AckCode, type ItemResult } from '../../protocol/index.ts'
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
  /** makes the client (default MQTT.js `connect`; the acknowledgment-path simulation passes a model broker) */
  connect?: (opts: IClientOptions) => MqttClient
}

export type MqttUpstreamStatus = {
  ack: 'broker' | 'results'
  connected: boolean
  subscribed: boolean
  inFlight: number
  oldestUnansweredMs: number | null
  lateResults: number
  badResults: number
}

type Pending = { resolve: (r: SendResult) => void, reject: (e: Error) => void, timer: NodeJS.Timeout, sentAt: number, sentBytes: number, url: string }

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
  /** broker mode: warned that batches reach no subscriber (again only after one did) */
  private warnedUnrouted = false
  private lateResults = 0
  private badResults = 0
  private readonly log: Logger

  constructor (private readonly config: MqttUpstreamConfig, log: Logger, private readonly onIgnored: (reason: 'late' | 'unreadable') => void = () => {}) {
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
      ...(c.protocolVersion === 5 ? { properties: { sessionExpiryInterval: 7 * 24 * 3600 } } : {}),
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
        url: base
      })
      client.publish(topic, payload, opts, (err, packet?: Packet) => {
        if (err) {
          const code = (err as Error & { code?: unknown }).code
          const status = typeof code === 'number' ? REASON_STATUS[code] ?? 503 : undefined
          if (status === undefined) done(() => reject(new UpstreamError(`publish to ${this.url} failed: ${err.message}`, { status: 0, cause: err })))
          else done(() => resolve({ ...answer(status, jsonError('puback_refused', `the broker refused the batch: ${err.message} (reason code ${String(code)})`)), sentBytes: payload.length }))
          return
        }
        const id = (packet as { messageId?: number } | undefined)?.messageId
        const unrouted = id !== undefined && this.unrouted.delete(id)
        if (c.ackMode === 'broker') {
          if (unrouted && !this.warnedUnrouted) this.log.warn({ topic }, 'the broker accepted a batch nobody is subscribed to (said once until one is)')
          this.warnedUnrouted = unrouted
          const results: ItemResult[] = meta.seqs.map((s) => [meta.partition, s, AckCode.Stored])
          const b = wire.version === 2 ? encodeResponseV2({ batch: meta.batchId, results }) : encodeResponse({ batch: meta.batchId, results })
          done(() => resolve({ ...answer(200, b), sentBytes: payload.length }))
        } else if (unrouted) {
          // no consumer: no results will come; wait and send again rather than sit out the timeout
          done(() => resolve({ ...answer(503, jsonError('no_consumer', `no consumer is subscribed to ${topic}`)), sentBytes: payload.length }))
        }
        // results mode: the PUBACK only says the broker has it; the results message answers
      })
    })
  }

  /** A results message: untrusted (any client with publish rights there may send one). Never throws. */
  private onResults (payload: Buffer, userProperties?: Record<string, string | string[]>): void {
    let h
    try {
      h = decodeResultsHeader(payload)
    } catch (err) {
      this.badResults++
      this.onIgnored('unreadable')
      this.log.warn({ err, bytes: payload.length }, 'unreadable results message ignored')
      return
    }
    const p = this.pending.get(h.batch)
    if (!p) {
      this.lateResults++
      this.onIgnored('late')
      this.log.debug({ batch: h.batch }, 'results for a batch not waited for (late, or an earlier run\'s) ignored')
      return
    }
    const body = h.status === 200 ? payload : jsonError(h.error, h.message)
    // MQTT 5 user properties stand for the HTTP answer's headers: `ingest-protocols: 1, 2`
    // lets wire.ts move this upstream to protocol v2, as over HTTP
    const headers: Record<string, string> = {}
    for (const [k, v] of Object.entries(userProperties ?? {})) if (k === PROTOCOLS_HEADER || k === ENCODINGS_HEADER) headers[k] = String(Array.isArray(v) ? v[0] : v).slice(0, 100)
    this.heard = headers
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
      badResults: this.badResults
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
