/**
 * Commands over the cloud broker (`--mqtt-broker`, docs/commands.md "Ingest <-> gateway"):
 *
 * - Down: a gateway's pending commands and recalls (Commands.pendingFor) as one
 *   `CommandsMessage` PUBLISH at QoS 1 on `gateways/{gatewayId}/commands`, when a command is
 *   created or routed to it (Commands.onWake), and again every `--command-resend-ms` while
 *   it has any (the gateway keeps each id once, so a repeated offer is harmless). The
 *   gateway holds a persistent session, so a message published while it is away waits at
 *   the broker.
 * - Up: `$share/{group}/gateways/+/command-reports` (the batches' share group, so several
 *   ingests split the reports); each `ReportsRequest` is applied (Commands.applyReports)
 *   and its `ReportsResponse` published at QoS 1 on `gateways/{gatewayId}/command-results`
 *   after the store's commit; our PUBACK of the reports goes out only after that (MQTT.js's
 *   handleMessage holds it), so a crash before the commit leaves them with the broker.
 *
 * Admission: the topic names the gateway (the broker's ACL vouches for it); the tokens
 * config must list it (its fleet decides which commands it may report on) and the body must
 * name the same gateway, else the reports are refused: every report answered 3 (rejected)
 * when the body can be read, and counted in ingest_command_refusals_total.
 *
 * Its own connection (client id `{--mqtt-client-id}-commands`), beside the batch consumer's:
 * the consumer's connections each hold one batch at a time, and a report must not wait
 * behind a batch's commit.
 */
import { hostname } from 'node:os'
import type { Logger } from 'pino'
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt'
import { decodeReportsRequest, encodeCommandsMessage, encodeReportsResponse, gatewayCommandsTopic, gatewayReportResultsTopic, type ReportResult } from '../../protocol/commands.ts'
import { GATEWAY_ID_RE } from '../../protocol/index.ts'
import { noDelay } from '../../common/mqtt-nodelay.ts'
import type { IngestMetrics } from '../metrics.ts'
import { brokerForDisplay, clientOptions, type MqttConsumerConfig } from '../mqtt-consumer.ts'
import type { CommandsMqttStatus } from '../readyz.ts'
import type { ReadAuth } from '../read-auth.ts'
import { CommandRefusal } from '../refusal.ts'
import { MAX_REPORTS } from './http.ts'
import type { Commands } from './index.ts'

const REPORTS_FILTER = 'gateways/+/command-reports'
const REPORTS_TOPIC = /^gateways\/([^/]+)\/command-reports$/

export type CommandsMqttConfig = MqttConsumerConfig & { commandResendMs: number }

export class CommandsMqtt {
  private closed = false
  private subscribed = false
  private readonly working = new Set<Promise<void>>()
  /** gateways being published to now, and those to publish to again after that */
  private readonly publishing = new Map<string, boolean>()
  /** gateways woken in this process (the resend covers them and the listed ones) */
  private readonly known = new Set<string>()
  private readonly timer: NodeJS.Timeout
  private readonly unwake: () => void
  /** reports requests applied, and refused as a whole */
  applied = 0
  refused = 0

  private constructor (private readonly client: MqttClient, private readonly config: CommandsMqttConfig, private readonly deps: { commands: Commands, readAuth: ReadAuth, metrics: IngestMetrics }, private readonly log: Logger) {
    this.unwake = deps.commands.onWake((gw) => { this.known.add(gw); this.publish(gw) })
    this.timer = setInterval(() => { this.resend() }, config.commandResendMs)
    this.timer.unref()
  }

  static create (config: CommandsMqttConfig, deps: { commands: Commands, readAuth: ReadAuth, metrics: IngestMetrics, log: Logger }): CommandsMqtt {
    const base = config.mqttClientId || `ingest-${hostname()}`
    const client = mqtt.connect(new URL(config.mqttBroker!).href, clientOptions(config, `${base}-commands`))
    const c = new CommandsMqtt(client, config, deps, deps.log.child({ component: 'commands-mqtt' }))
    c.attach()
    return c
  }

  private get filter (): string {
    return this.config.mqttShareGroup === '' ? REPORTS_FILTER : `$share/${this.config.mqttShareGroup}/${REPORTS_FILTER}`
  }

  private attach (): void {
    const { client, log } = this
    client.on('connect', () => {
      noDelay(client)
      client.subscribe(this.filter, { qos: 1 }, (err, granted) => {
        const g = granted?.[0]
        if (err || !g || g.qos > 2) { log.error({ err, filter: this.filter, granted: g?.qos }, 'the broker refused the command reports subscription'); return }
        this.subscribed = true
        log.info({ filter: this.filter }, 'subscribed to command reports')
        this.resend() // what was routed while we were away
      })
    })
    client.on('close', () => { this.subscribed = false })
    client.on('error', (err) => log.warn({ err }, 'broker connection error (commands)'))
    // [MQTT-4.3.2] the PUBACK of a reports message goes out only when done() is called: after the commit
    client.handleMessage = (packet, done) => {
      if (this.closed) return
      const work = this.onReports(packet).catch((err: unknown) => log.error({ err, topic: packet.topic }, 'command reports handling failed unexpectedly'))
      this.working.add(work)
      void work.then(() => { this.working.delete(work); done() })
    }
  }

  get ready (): boolean { return this.subscribed }

  /** What /readyz shows of this connection (readyz.ts). */
  status (): CommandsMqttStatus {
    return { broker: brokerForDisplay(this.config.mqttBroker!), connected: this.client.connected, subscribed: this.subscribed }
  }

  private async onReports (packet: IPublishPacket): Promise<void> {
    const { deps, log } = this
    const topic = String(packet.topic)
    const m = REPORTS_TOPIC.exec(topic)
    if (m === null) { log.warn({ topic }, 'message on a topic that is not a command reports topic ignored'); return }
    const gateway = m[1]!
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload)
    let req
    try {
      req = decodeReportsRequest(payload, { maxReports: MAX_REPORTS })
    } catch (err) {
      this.refuse(new CommandRefusal('unreadable', 'invalid_reports', (err as Error).message, { field: 'body', cause: err }), gateway)
      return
    }
    const refusal = !GATEWAY_ID_RE.test(gateway) || !deps.readAuth.isKnownGateway(gateway)
      ? `gateway ${gateway.slice(0, 64)} is not listed in the ingest's tokens config: it may not report on commands`
      : req.gateway !== gateway ? `the topic belongs to gateway ${gateway}, the reports say ${JSON.stringify(req.gateway.slice(0, 64))}` : null
    let results: ReportResult[]
    if (refusal !== null) {
      this.refuse(new CommandRefusal('forbidden', 'forbidden', refusal, { field: 'gateway' }), gateway)
      if (!GATEWAY_ID_RE.test(gateway)) return
      results = req.reports.map((_, i) => [i, 3, refusal])
    } else {
      try {
        results = await deps.commands.applyReports(gateway, deps.readAuth.fleetOf(gateway), req)
        this.applied++
      } catch (err) {
        log.warn({ err, gateway }, 'command reports not applied: answering retry')
        results = req.reports.map((_, i) => [i, 2, 'store unavailable'])
      }
    }
    // not awaited: its PUBACK comes in on this connection, whose message handler we hold
    this.client.publish(gatewayReportResultsTopic(gateway), encodeReportsResponse({ batch: req.batch, results }), { qos: 1 }, (err) => {
      if (err) log.warn({ err, gateway, batch: req.batch }, 'publishing command report results failed; the gateway sends its reports again')
    })
  }

  /** Counts and logs reports refused as a whole (the kinds the HTTP route answers 400 and 403 with). */
  private refuse (r: CommandRefusal, gateway: string): void {
    this.refused++
    this.deps.metrics.commandRefusals.inc({ reason: r.errorCode })
    this.log.warn({ gateway: gateway.slice(0, 64), kind: r.kind, error: r.errorCode, reason: r.message.slice(0, 300) }, 'command reports refused')
  }

  /** Publishes a gateway's pending work, if any; one publish per gateway at a time, coalescing wake-ups. */
  private publish (gateway: string): void {
    if (this.closed || !GATEWAY_ID_RE.test(gateway)) return
    if (this.publishing.has(gateway)) { this.publishing.set(gateway, true); return }
    this.publishing.set(gateway, false)
    const work = (async () => {
      do {
        this.publishing.set(gateway, false)
        const pending = await this.deps.commands.pendingFor(gateway)
        if (pending.commands.length === 0 && pending.recalls.length === 0) continue
        if (!this.client.connected) break // the resend after the next connect brings it
        await this.client.publishAsync(gatewayCommandsTopic(gateway), encodeCommandsMessage(pending), { qos: 1 })
      } while (this.publishing.get(gateway) === true && !this.closed)
    })().catch((err: unknown) => { this.log.warn({ err, gateway }, 'publishing commands failed; they go again after --command-resend-ms') })
      .finally(() => { this.publishing.delete(gateway) })
    this.working.add(work)
    void work.then(() => this.working.delete(work))
  }

  private resend (): void {
    for (const gw of new Set([...this.deps.readAuth.listedGateways(), ...this.known])) this.publish(gw)
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.timer)
    this.unwake()
    await Promise.all([...this.working])
    const timer = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref())
    await Promise.race([this.client.endAsync(false).catch(() => {}), timer])
    await this.client.endAsync(true).catch(() => {})
  }
}
