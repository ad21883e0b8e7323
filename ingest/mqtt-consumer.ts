/**
 * The ingest as an MQTT consumer (`--mqtt-broker URL`, docs/upstream-mqtt.md): batches that
 * gateways publish to a cloud broker go through the same transport-free steps as `POST
 * /v1/batches` (pipeline.ts: decode with the untrusted-CBOR limits, validate, bound the
 * partitions, commit to the sink with its dedup, chaos around the commit when on), and
 * the per-item results go back to the gateway's results topic at QoS 1.
 *
 * Order of effects, for each batch: sink commit -> results PUBLISH -> PUBACK of the batch.
 * The batch is acknowledged to the broker only after its commit (MQTT.js's handleMessage
 * holds the PUBACK), so a crash before the commit leaves it with the broker, which sends it
 * again (persistent session, clean=false); a crash between commit and results costs the
 * gateway a timeout and a resend, answered duplicate. Nothing is stored twice.
 *
 * Subscription: `$share/{group}/gateways/+/batches/+` (MQTT 5 shared subscription, so
 * several stateless ingests split the load). Who may publish to a gateway's topics is the
 * broker's business (its ACL); this side still refuses (`forbidden`, 403 in the results) a
 * batch whose gateway id differs from the topic's. A step's refusal (refusal.ts) becomes
 * the results message's `status`, `error`, `message` and `retryAfterMs` (`resultsRefusal`).
 *
 * Admission: the ACL proves which gateway sent a batch, not that it may write readings.
 * That is the tokens config's word, as over HTTP: a gateway it lists (with or without a
 * secret) writes into its fleet; one it does not list is refused (403) unless the operator
 * passes --mqtt-allow-unlisted-gateways. Before that rule every unlisted gateway wrote into
 * fleet `default`, where the natural key (fleet, device, boot, seq) is shared: a gateway
 * confined by the ACL to its own topics could send other gateways' device ids with forged
 * values first and have the real readings answered `duplicate` and deleted.
 */
import { hostname } from 'node:os'
import type { Logger } from 'pino'
import mqtt, { type IClientOptions, type IPublishPacket, type MqttClient } from 'mqtt'
import {
  CONTENT_ENCODING, ConfigError, ENCODINGS_HEADER, GATEWAY_ID_RE, PROTOCOLS_HEADER, StoreError, checkTopicTemplates, encodeResultsMessage, fillTopic, parseTopic, sniffEncoding, sniffVersion, topicFilter,
  type WholeBatchRefusal
} from '../protocol/index.ts'
import { noDelay } from '../common/mqtt-nodelay.ts'
import type { IngestConfig } from './config.ts'
import { ACCEPTED_ENCODINGS, decodeContent } from './decode.ts'
import { answer, checkPartitions, commitStep, decode, newBatch, validate, type BatchCtx, type PipelineDeps, type Step } from './pipeline.ts'
import type { MqttConsumerStatus } from './readyz.ts'
import { BatchRefusal, REFUSAL_STATUS } from './refusal.ts'

/**
 * The pipeline's steps this consumer runs: where the HTTP server checks a token or a
 * certificate, the media type and the body, this consumer checks the topic; then the commit,
 * wrapped in fault injection when it is on.
 */
function sharedSteps (deps: PipelineDeps): Step[] {
  return [decode, validate, checkPartitions, matchTopic, commitStep(deps.chaos)]
}

/** What decodeContent takes, advertised in every results message as the HTTP ingest does in a header. */
const ENCODINGS = ACCEPTED_ENCODINGS.join(', ')

/**
 * The topic names the gateway (the broker's ACL vouches for it); the body must say the same,
 * and the tokens config must list it (see Admission above).
 */
function matchTopic (ctx: BatchCtx, deps: PipelineDeps): void {
  if (!GATEWAY_ID_RE.test(ctx.gateway)) throw new BatchRefusal('forbidden', 'forbidden', `the topic's gateway id ${JSON.stringify(ctx.gateway.slice(0, 80))} must match ${GATEWAY_ID_RE}`, { field: 'gateway' })
  if (ctx.batch.gateway !== ctx.gateway) throw new BatchRefusal('forbidden', 'forbidden', `the topic belongs to gateway ${ctx.gateway}, the batch says ${JSON.stringify(ctx.batch.gateway)}`, { field: 'gateway' })
  if (!deps.config.mqttAllowUnlistedGateways && !deps.readAuth.isKnownGateway(ctx.gateway)) {
    throw new BatchRefusal('forbidden', 'forbidden', `gateway ${ctx.gateway} is not listed in the ingest's tokens config (--tokens-file, --token): it may not write readings; list it with its fleet, or start the ingest with --mqtt-allow-unlisted-gateways`, { field: 'gateway' })
  }
}

export type MqttConsumerConfig = Pick<IngestConfig, 'mqttBroker' | 'mqttAllowUnlistedGateways' | 'mqttTopic' | 'mqttResultsTopic' | 'mqttShareGroup' | 'mqttClientId' | 'mqttUsername' | 'mqttConnections' | 'mqttReconnectMs' | 'maxBodyBytes' | 'protocols'> & {
  tls: { ca?: Buffer, cert?: Buffer, key?: Buffer }
  password: string
}

/** The broker URL to show: no user name or password, even when the operator put them in it. */
export function brokerForDisplay (url: string): string {
  try {
    const u = new URL(url)
    u.username = ''
    u.password = ''
    return u.href.replace(/\/$/, '')
  } catch { return '(not a URL)' }
}

export function checkMqttConsumerConfig (c: Pick<IngestConfig, 'mqttBroker' | 'mqttTopic' | 'mqttResultsTopic' | 'mqttShareGroup'>): void {
  if (c.mqttBroker === undefined) return
  let url: URL
  try { url = new URL(c.mqttBroker) } catch { throw new ConfigError('mqttBroker', `${JSON.stringify(c.mqttBroker)} is not a URL`) }
  if (url.protocol !== 'mqtt:' && url.protocol !== 'mqtts:') throw new ConfigError('mqttBroker', `${c.mqttBroker}: must be mqtt:// or mqtts://`)
  checkTopicTemplates({ key: 'mqttTopic', template: c.mqttTopic }, { key: 'mqttResultsTopic', template: c.mqttResultsTopic })
  if (!/^[A-Za-z0-9._-]{0,64}$/.test(c.mqttShareGroup)) throw new ConfigError('mqttShareGroup', 'must be 0..64 of A-Z a-z 0-9 . _ -')
}

export class MqttConsumer {
  /** the connections whose batch subscription the broker granted */
  private readonly subscribed = new Set<MqttClient>()
  private closed = false
  private batches = 0
  private unanswerable = 0
  /** the batch each connection is working on */
  private readonly working = new Map<MqttClient, Promise<void>>()
  private readonly steps: Step[]

  private constructor (private readonly clients: MqttClient[], private readonly config: MqttConsumerConfig, private readonly deps: PipelineDeps, private readonly log: Logger) {
    this.steps = sharedSteps(deps)
  }

  /**
   * Connects (in the background: a broker that is down is retried every second) and
   * subscribes, over `mqttConnections` connections: each takes one batch at a time, so
   * several let the shared subscription hand this process several batches at once.
   */
  static create (config: MqttConsumerConfig, deps: PipelineDeps): MqttConsumer {
    const url = new URL(config.mqttBroker!)
    const base = config.mqttClientId || `ingest-${hostname()}`
    const clients = Array.from({ length: config.mqttConnections }, (_, i) => mqtt.connect(url.href, clientOptions(config, config.mqttConnections === 1 ? base : `${base}-${i}`)))
    const c = new MqttConsumer(clients, config, deps, deps.log.child({ component: 'mqtt-consumer' }))
    if (!config.mqttAllowUnlistedGateways && !deps.readAuth.listsAnyGateway()) {
      c.log.warn({ broker: brokerForDisplay(config.mqttBroker!) }, 'no gateway is listed in the tokens config: every batch from the broker will be refused')
    }
    for (const client of clients) c.attach(client)
    return c
  }

  private get filter (): string {
    const f = topicFilter(this.config.mqttTopic)
    return this.config.mqttShareGroup === '' ? f : `$share/${this.config.mqttShareGroup}/${f}`
  }

  private attach (client: MqttClient): void {
    const { log } = this
    client.on('connect', (connack) => {
      noDelay(client)
      log.info({ broker: this.config.mqttBroker, clientId: client.options.clientId, sessionPresent: connack.sessionPresent }, 'connected to the broker')
      client.subscribe(this.filter, { qos: 1 }, (err, granted) => {
        const g = granted?.[0]
        if (err || !g || g.qos > 2) { log.error({ err, filter: this.filter, granted: g?.qos }, 'the broker refused the batch subscription'); return }
        this.subscribed.add(client)
        log.info({ filter: this.filter, clientId: client.options.clientId }, 'subscribed to gateway batches')
      })
    })
    client.on('close', () => { this.subscribed.delete(client) })
    client.on('error', (err) => log.warn({ err }, 'broker connection error'))
    // [MQTT-4.3.2] our PUBACK of a batch goes out only when this callback is called: after the commit
    client.handleMessage = (packet, done) => {
      // closing: no PUBACK, so the broker keeps the batch for the next consumer
      if (this.closed) return
      const work = this.onBatch(client, packet).catch((err: unknown) => log.error({ err, topic: packet.topic }, 'batch handling failed unexpectedly'))
      this.working.set(client, work)
      void work.then(() => done())
    }
  }

  /** Runs one batch through the pipeline and publishes its results. Never throws. */
  private async onBatch (client: MqttClient, packet: IPublishPacket): Promise<void> {
    const { deps, config, log } = this
    const topic = String(packet.topic)
    const where = parseTopic(config.mqttTopic, topic)
    if (where === null) { log.warn({ topic }, 'message on a topic that is not a batch topic ignored'); return }
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload)
    const correlation = packet.properties?.correlationData
    // MQTT 5: the user property content-encoding marks the compression (br has no magic
    // bytes); without it, the payload's first bytes say gzip, deflate or plain CBOR
    const marked = packet.properties?.userProperties?.[CONTENT_ENCODING]
    const encoding = marked === undefined ? sniffEncoding(payload) : String(Array.isArray(marked) ? marked[0] : marked).trim().toLowerCase().slice(0, 40)
    this.batches++
    const ctx = newBatch(where.gatewayId)
    ctx.raw = payload
    let refusal: WholeBatchRefusal | null = null
    try {
      ctx.body = await decodeContent(payload, encoding, config.maxBodyBytes)
      ctx.version = sniffVersion(ctx.body)
      deps.metrics.receivedBytes.inc({ encoding, version: String(ctx.version) }, payload.length)
      if (ctx.version === 2 && !config.protocols.includes('2')) throw new BatchRefusal('unreadable', 'invalid_batch', 'v: protocol 2 is not served by this ingest (--protocols)', { field: 'v' })
      for (const step of this.steps) await step(ctx, deps)
    } catch (e) {
      refusal = resultsRefusal(e, log)
      deps.metrics.rejectedBatches.inc({ reason: refusal.error })
      log.warn({ status: refusal.status, error: refusal.error, reason: refusal.message.slice(0, 300), gateway: where.gatewayId, topic }, 'batch refused')
    }
    const answered = refusal === null ? answer(ctx) : null
    if (refusal === null && answered === null) return // chaos: committed, the answer is lost: no results message
    const batchId = (ctx.batch as BatchCtx['batch'] | undefined)?.batch ?? (correlation ? Buffer.from(correlation).toString('utf8') : undefined)
    if (batchId === undefined || batchId.length === 0 || batchId.length > 128) {
      this.unanswerable++
      log.warn({ topic, gateway: where.gatewayId }, 'batch without a readable id cannot be answered; the gateway sends it again after its timeout')
      return
    }
    const body = encodeResultsMessage(ctx.version, batchId, refusal ?? { results: answered!.results })
    // Not awaited: our PUBACK for this results message comes in on the connection this
    // handler is holding; the broker has the message once it is written.
    // MQTT 5 user property = the HTTP answer's header: a gateway on `auto` moves to v2
    // and the encodings it takes (ingest-encodings): a gateway on `auto` compresses with br
    const opts = config.protocols.includes('2') ? { qos: 1 as const, properties: { userProperties: { [PROTOCOLS_HEADER]: '1, 2', [ENCODINGS_HEADER]: ENCODINGS } } } : { qos: 1 as const }
    client.publish(fillTopic(config.mqttResultsTopic, where.gatewayId), body, opts, (err) => {
      if (err) log.warn({ err, gateway: where.gatewayId, batch: batchId }, 'publishing results failed; the gateway sends the batch again after its timeout')
    })
  }

  /** Every connection subscribed. */
  get ready (): boolean { return this.subscribed.size === this.clients.length }

  status (): MqttConsumerStatus {
    const connectedConnections = this.clients.filter((c) => c.connected).length
    return {
      broker: brokerForDisplay(this.config.mqttBroker!),
      connected: connectedConnections === this.clients.length,
      subscribed: this.ready,
      connections: this.clients.length,
      connectedConnections,
      subscribedConnections: this.subscribed.size,
      batches: this.batches,
      unanswerable: this.unanswerable
    }
  }

  /** Stops taking batches and waits for the one in progress (so the sink may close after). Idempotent. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await Promise.all(this.working.values())
    // a graceful end lets the last results message go out; a broker that is gone does not hold us
    await Promise.all(this.clients.map(async (client) => {
      const timer = new Promise<void>((resolve) => setTimeout(resolve, 2000).unref())
      await Promise.race([client.endAsync(false).catch(() => {}), timer])
      await client.endAsync(true).catch(() => {})
    }))
  }
}

/**
 * What a failed step becomes in the results message: a refusal gets the status of
 * `REFUSAL_STATUS` (refusal.ts), the one HTTP gives it (server.ts `httpErrorOf`).
 */
export function resultsRefusal (e: unknown, log: Logger): WholeBatchRefusal {
  if (e instanceof BatchRefusal) {
    return { status: REFUSAL_STATUS[e.kind], error: e.errorCode, message: e.message, ...(e.retryAfterMs !== undefined ? { retryAfterMs: e.retryAfterMs } : {}) }
  }
  if (e instanceof StoreError) return { status: REFUSAL_STATUS.busy, error: 'store_unavailable', message: e.message, retryAfterMs: 1000 }
  log.error({ err: e }, 'batch failed unexpectedly')
  return { status: 500, error: 'internal', message: 'internal error' }
}

function clientOptions (config: MqttConsumerConfig, clientId: string): IClientOptions {
  return {
    clientId,
    clean: false, // batches published while we are away wait in the session
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 7 * 24 * 3600 },
    reconnectPeriod: config.mqttReconnectMs,
    connectTimeout: 10_000,
    resubscribe: false,
    ...(config.password !== '' ? { username: config.mqttUsername, password: config.password } : {}),
    ...config.tls,
    rejectUnauthorized: true
  }
}
