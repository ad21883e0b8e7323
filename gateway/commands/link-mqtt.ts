/**
 * The command link over the cloud MQTT broker (`--upstream mqtt://` or `mqtts://`,
 * docs/commands.md "Ingest <-> gateway"): its own MQTT.js connection beside the readings'
 * (gateway/flush/mqtt-upstream.ts), with the same broker URLs, credentials, TLS, ALPN and
 * protocol version, and its own stable client id (`{readings' client id}-cmd`).
 *
 * Down: a persistent session (clean=false; MQTT 5: clean start 0 and a week's session
 * expiry) subscribed at QoS 1 to `gateways/{id}/commands`, so what the ingest publishes
 * while the gateway is away waits at the broker. Each commands message is decoded and handed
 * to `onCommands`; its PUBACK goes only after the promise resolved, i.e. once the core made
 * the commands durable. That is done in MQTT.js's `handleMessage(packet, callback)` hook: it
 * sends a QoS 1 PUBACK when the callback is called, and takes the next packet of the
 * connection only then, so messages are handled one at a time, in order (MQTT.js's
 * `customHandleAcks` does the same for MQTT 5 only; handleMessage works for 3.1.1 too).
 * A rejected promise: no PUBACK, and the connection is dropped (the messages after it on
 * that connection are not handled either), so the broker sends the message again when
 * MQTT.js reconnects (`--upstream-reconnect-ms`). A connection lost while `onCommands` runs:
 * its PUBACK is not sent (the broker redelivers on the new connection, and the core keeps
 * each command id once); the redelivered copy waits until the first call settled.
 *
 * Up: a reports request is one QoS 1 PUBLISH on `gateways/{id}/command-reports`; the
 * answer is the ReportsResponse with the same `batch` on `gateways/{id}/command-results`
 * (subscribed in the same session), or no answer after `--command-results-timeout-ms`.
 * Results for a batch nobody waits for (late, an earlier run's) are counted and ignored.
 * An MQTT 5 PUBACK reason code refuses the request as the readings' upstream reads it
 * (not authorized 403, too large 413, quota 429, else 503); "no matching subscribers"
 * (0x10) is refused at once as 503: no consumer will answer it.
 *
 * Note for the core: the results of a reports request come through the same in-order
 * pipeline as the commands, so `onCommands` must not wait for a `sendReports` answer.
 */
import type { Logger } from 'pino'
import mqtt, { type IClientPublishOptions, type IPublishPacket, type MqttClient, type Packet } from 'mqtt'
import { decodeCommandsMessage, decodeReportsResponse, encodeReportsRequest, gatewayCommandsTopic, gatewayReportResultsTopic, gatewayReportsTopic, type CommandsMessage, type ReportsRequest } from '../../protocol/commands.ts'
import { noDelay } from '../../common/mqtt-nodelay.ts'
import { isAuthRefusal, NO_MATCHING_SUBSCRIBERS, persistentClientOptions, type MqttClientFields } from '../flush/mqtt-client.ts'
import { pubackRefusal } from '../flush/mqtt-upstream.ts'
import type { CommandLink, LinkState, ReportsAnswer } from './link.ts'

/** Reports PUBLISHes MQTT.js may hold unacknowledged (clean=false: it resends them on reconnect); beyond: no answer at once. */
const MAX_UNACKED_REPORTS = 8
const SESSION_EXPIRY_S = 7 * 24 * 3600

export type MqttLinkConfig = MqttClientFields & {
  gatewayId: string
  resultsTimeoutMs: number
}

export type MqttLinkCounters = {
  /** commands messages handed to onCommands and PUBACKed */
  delivered: number
  /** onCommands rejected: not PUBACKed, connection dropped */
  refused: number
  /** commands messages that could not be decoded (PUBACKed and dropped: they never become readable) */
  badCommands: number
  /** results messages for a batch not waited for */
  unknownResults: number
  /** results messages that could not be decoded */
  badResults: number
}

type Pending = { resolve: (a: ReportsAnswer) => void }

export class MqttCommandLink implements CommandLink {
  private client: MqttClient | null = null
  private closed = false
  /** connection number: a callback of an earlier connection sends no PUBACK on this one */
  private gen = 0
  /** onCommands failed on this connection: nothing more is acknowledged until it is replaced */
  private poisoned = false
  private subscribed = false
  private authRefused = false
  private connError = ''
  private lastOkAt: number | null = null
  private chain: Promise<void> = Promise.resolve()
  private readonly pending = new Map<string, Pending>()
  private readonly unrouted = new Set<number>()
  private unacked = 0
  private readonly log: Logger
  readonly counters: MqttLinkCounters = { delivered: 0, refused: 0, badCommands: 0, unknownResults: 0, badResults: 0 }

  constructor (private readonly config: MqttLinkConfig, log: Logger) {
    this.log = log.child({ link: 'mqtt' })
  }

  private get commandsTopic (): string { return gatewayCommandsTopic(this.config.gatewayId) }
  private get resultsTopic (): string { return gatewayReportResultsTopic(this.config.gatewayId) }

  get url (): string {
    const o = this.client?.options
    return o?.host ? `${o.protocol ?? 'mqtt'}://${o.host}:${o.port ?? ''}` : this.config.urls[0] ?? ''
  }

  start (onCommands: (m: CommandsMessage) => Promise<void>): void {
    if (this.client || this.closed) return
    const c = this.config
    const opts = persistentClientOptions(c, { sessionExpiryInterval: SESSION_EXPIRY_S })
    const client = mqtt.connect(opts)
    this.client = client
    // MQTT.js sends a QoS 1 PUBACK when this calls back, and takes the connection's next packet only then
    client.handleMessage = (packet, callback) => { this.onPublish(packet, callback, onCommands) }
    client.on('connect', (connack) => {
      noDelay(client)
      this.gen++
      this.poisoned = false
      this.connError = ''
      this.authRefused = false
      this.log.info({ url: this.url, sessionPresent: connack.sessionPresent }, 'command link connected to the upstream broker')
      const gen = this.gen
      client.subscribe([this.commandsTopic, this.resultsTopic], { qos: 1 }, (err, granted) => {
        if (gen !== this.gen) return
        const bad = err ? [] : (granted ?? []).filter((g) => g.qos > 1)
        if (err || bad.length > 0 || (granted ?? []).length < 2) {
          this.connError = `the broker refused the command link's subscriptions: ${err?.message ?? JSON.stringify(granted)}`
          this.log.error({ err, granted }, this.connError)
          return
        }
        this.subscribed = true
        this.lastOkAt = Date.now()
      })
    })
    client.on('close', () => { this.subscribed = false; this.gen++ })
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback' && packet.reasonCode === NO_MATCHING_SUBSCRIBERS && packet.messageId !== undefined) this.unrouted.add(packet.messageId)
    })
    client.on('error', (err) => {
      if (err.message !== this.connError) this.log.warn({ err, url: this.url }, 'command link: upstream broker connection error')
      this.connError = err.message
      this.authRefused = isAuthRefusal(err)
    })
  }

  /** One PUBLISH from the broker; `callback()` PUBACKs it (QoS 1), `callback(err)` does not. */
  private onPublish (packet: IPublishPacket, callback: (err?: Error) => void, onCommands: (m: CommandsMessage) => Promise<void>): void {
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    const gen = this.gen
    // a PUBACK made while the connection is down would wait in MQTT.js's offline queue and go
    // out on the next connection: nothing is acknowledged once this one is gone or given up
    const live = (): boolean => !this.closed && !this.poisoned && gen === this.gen && this.client?.connected === true
    const nack = (): void => { callback(new Error('not acknowledged: the connection is gone or being replaced')) }
    if (packet.topic === this.resultsTopic) { this.onResults(payload); if (live()) callback(); else nack(); return }
    if (!live()) { nack(); return }
    if (packet.topic !== this.commandsTopic) { callback(); return }
    // one at a time across connections too: a copy redelivered after a reconnect waits for the first call
    this.chain = this.chain.then(async () => {
      if (!live()) return
      let msg: CommandsMessage
      try {
        msg = decodeCommandsMessage(payload)
      } catch (err) {
        this.counters.badCommands++
        this.log.warn({ err, bytes: payload.length }, 'unreadable commands message dropped')
        callback()
        return
      }
      try {
        await onCommands(msg)
      } catch (err) {
        if (!live()) return
        this.counters.refused++
        this.poisoned = true
        this.log.warn({ err, commands: msg.commands.length }, 'commands not stored: not acknowledging them; reconnecting so the broker sends them again')
        this.client?.stream?.destroy()
        callback(err as Error)
        return
      }
      // the connection was lost meanwhile: the broker sends the message again on the new one
      if (!live()) return
      this.counters.delivered++
      this.lastOkAt = Date.now()
      callback()
    })
  }

  private onResults (payload: Buffer): void {
    let batch: string
    let results
    try {
      const r = decodeReportsResponse(payload)
      batch = r.batch
      results = r.results
    } catch (err) {
      this.counters.badResults++
      this.log.warn({ err, bytes: payload.length }, 'unreadable command results message ignored')
      return
    }
    const p = this.pending.get(batch)
    if (!p) {
      this.counters.unknownResults++
      this.log.debug({ batch }, 'command results for a batch not waited for (late, or an earlier run\'s) ignored')
      return
    }
    p.resolve({ kind: 'results', results })
  }

  async sendReports (req: ReportsRequest): Promise<ReportsAnswer> {
    const client = this.client
    if (this.closed || !client) return { kind: 'none', error: 'the command link is not running' }
    if (!client.connected && this.authRefused) return { kind: 'refused', status: 401, message: `not_authorized: the broker refused our credentials: ${this.connError}` }
    if (!client.connected) return { kind: 'none', error: `not connected to the upstream broker ${this.url}${this.connError ? `: ${this.connError}` : ''}` }
    if (!this.subscribed) return { kind: 'none', error: `not subscribed to ${this.resultsTopic} yet` }
    if (this.pending.has(req.batch)) return { kind: 'none', error: `reports batch ${req.batch} is already waiting for its results` }
    if (this.unacked >= MAX_UNACKED_REPORTS) return { kind: 'none', error: `${this.url} has not acknowledged ${this.unacked} reports PUBLISHes` }
    let payload: Buffer
    try { payload = encodeReportsRequest(req) } catch (err) { return { kind: 'none', error: `cannot encode reports: ${(err as Error).message}` } }
    const opts: IClientPublishOptions = { qos: 1 }
    if (this.config.protocolVersion === 5) opts.properties = { contentType: 'application/cbor', correlationData: Buffer.from(req.batch) }
    return await new Promise<ReportsAnswer>((resolve) => {
      let settled = false
      const done = (a: ReportsAnswer): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        this.pending.delete(req.batch)
        resolve(a)
      }
      const timer = setTimeout(() => done({ kind: 'none', error: `no results for reports batch ${req.batch} within ${this.config.resultsTimeoutMs} ms` }), this.config.resultsTimeoutMs)
      this.pending.set(req.batch, { resolve: done })
      this.unacked++
      client.publish(gatewayReportsTopic(this.config.gatewayId), payload, opts, (err, packet?: Packet) => {
        this.unacked--
        if (err) {
          const code = (err as Error & { code?: unknown }).code
          if (typeof code !== 'number') done({ kind: 'none', error: `publish to ${this.url} failed: ${err.message}` })
          else done({ kind: 'refused', status: Number(pubackRefusal(code).label), message: `puback_refused: the broker refused the reports: ${err.message} (reason code ${code})` })
          return
        }
        const id = (packet as { messageId?: number } | undefined)?.messageId
        if (id !== undefined && this.unrouted.delete(id)) done({ kind: 'refused', status: 503, message: `no_consumer: no consumer is subscribed to ${gatewayReportsTopic(this.config.gatewayId)}` })
      })
    })
  }

  status (): LinkState {
    const connected = this.client?.connected ?? false
    const state = this.client === null ? 'idle' : this.authRefused ? 'auth-failed' : connected && this.subscribed ? 'ok' : 'failing'
    const lastError = state === 'ok' ? null : this.connError || (connected ? 'subscribing' : this.client ? 'not connected' : null)
    return { state, url: this.url, lastError, lastOkAt: this.lastOkAt }
  }

  /** Ends the connection: an `onCommands` in progress is not acknowledged (the broker sends its message again to the next run). */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const p of [...this.pending.values()]) p.resolve({ kind: 'none', error: 'the command link is closing' })
    const client = this.client
    if (client) await client.endAsync(true).catch(() => {})
  }
}
