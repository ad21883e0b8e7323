/**
 * The gateway: broker -> intake -> store -> flusher, plus the admin server.
 * `await Gateway.create(config, logger)` / `await gateway.close()` (idempotent; finishes
 * writes and PUBACKs in progress, then closes LevelDB).
 */
import type { Logger } from 'pino'
import type { Client } from 'aedes'
import { Counter } from 'prom-client'
import { ConfigError } from '../protocol/index.ts'
import { Admin } from './admin/index.ts'
import { Metrics } from './metrics/index.ts'
import { AuthFile } from './broker/auth.ts'
import { Broker } from './broker/index.ts'
import { pickLimits } from './broker/limits-config.ts'
import { checkSecret, type GatewayConfig } from './config.ts'
import { DeadLetterTools } from './dlq/index.ts'
import { Flusher, type BatchUpstream } from './flush/index.ts'
import { Intake } from './intake/index.ts'
import { Admission, loopBusy } from './intake/admission.ts'
import { readGateOf } from './broker/aedes-internals.ts'
import { Mapper } from './mapping/index.ts'
import { Store } from './store/index.ts'
import { CommandMetrics, GatewayCommands } from './commands/index.ts'
import type { CommandLink } from './commands/link.ts'
import { createCommandLink } from './commands/links.ts'
import { loadUpstreamTls, readConfigFile, resolveToken, tlsListenerConfig } from './tls.ts'

export { parseGatewayConfig, gatewaySchema, type GatewayConfig } from './config.ts'

/** What /readyz answers: `delivery` false when no upstream is configured (ready for intake only). */
export type Readiness = { ready: boolean, delivery: boolean, reasons: string[] }

const NO_UPSTREAM = 'no upstream configured (--upstream): ready for intake, not for delivery; readings are stored and acknowledged but never sent'

export class Gateway {
  private closing: Promise<void> | null = null

  private constructor (
    readonly config: GatewayConfig,
    readonly store: Store,
    readonly intake: Intake,
    readonly broker: Broker,
    readonly flusher: Flusher,
    readonly admin: Admin,
    readonly metrics: Metrics,
    private readonly log: Logger,
    /** Commands to devices (gateway/commands/): null with `--commands off` or without an upstream */
    readonly commands: GatewayCommands | null = null
  ) {}

  /** The plain MQTT port (throws with `--no-mqtt`). */
  get mqttPort (): number { return this.broker.port }
  get tlsPort (): number | null { return this.broker.tlsPort }
  get adminPort (): number { return this.admin.port }

  /**
   * `opts.upstream`: an upstream of the caller's instead of the one `--upstream` makes (a test's or a simulation's fake: gateway/flush/answer.ts).
   * `opts.commandLink`: a command link of the caller's instead of the one `createCommandLink` makes (a test's fake).
   */
  static async create (config: GatewayConfig, logger: Logger, opts: { defaultMetrics?: boolean, upstream?: BatchUpstream, commandLink?: CommandLink } = {}): Promise<Gateway> {
    const metrics = new Metrics({ defaultMetrics: opts.defaultMetrics, deviceStatsMax: config.deviceStatsMax })
    const adminToken = config.adminTokenFile ? (await readConfigFile('adminTokenFile', config.adminTokenFile)).toString('utf8').trim() : config.adminToken
    if (config.adminTokenFile && !adminToken) throw new ConfigError('adminTokenFile', `${config.adminTokenFile} is empty`)
    if (config.adminTokenFile) checkSecret('adminTokenFile', `--admin-token-file ${config.adminTokenFile}: the token`, adminToken)
    const auth = config.auth === 'file' ? AuthFile.parse((await readConfigFile('authFile', config.authFile!, `with --auth file, create it: gateway passwd ${config.authFile!} add-device ID`)).toString('utf8'), config.authFile!) : null
    const token = await resolveToken(config)
    const upstreamTls = await loadUpstreamTls(config)
    const store = await Store.open(config, logger)
    const closeOnError = async <T>(fn: () => Promise<T>, ...cleanup: Array<{ close: () => Promise<void> }>): Promise<T> => {
      try { return await fn() } catch (err) { for (const c of cleanup) await c.close().catch(() => {}); throw err }
    }
    store.on('cycle', (c) => { metrics.commitOps.observe(c.ops); metrics.commitSeconds.observe(c.ms / 1000) })
    store.on('evicted', (_ranges, n) => metrics.evicted.inc(n))
    store.on('dlqDropped', (n) => metrics.dlqDropped.inc(n))
    const admission = config.overloadIntakeRatio > 0 ? overloadAdmission(config.overloadIntakeRatio, store, metrics, logger) : null
    const intake = new Intake(store, config, logger, metrics, admission)
    const mapper = config.mappings.length ? new Mapper(config.mappings, intake, config.maxPayloadBytes, metrics.registry, logger) : null
    const broker = await closeOnError(() => Broker.create({ ...config, auth, mqttPort: config.mqtt ? config.mqttPort : null, tls: tlsListenerConfig(config), security: config, limits: pickLimits(config), mapper }, intake, metrics, logger), store)
    const flusher = new Flusher(store, { ...config, token, upstreamTls, receiptFormat: (device) => intake.payloadFormat(device) }, (topic, payload) => broker.publish(topic, payload), metrics, logger, { upstream: opts.upstream })
    let gw: Gateway | undefined
    const dlq = new DeadLetterTools(store, { maxPayloadBytes: config.maxPayloadBytes, via: 'admin' }, logger, (action, n) => {
      metrics.dlqActions.inc({ action })
      metrics.dlqActionItems.inc({ action }, n)
    })
    const admin = await closeOnError(() => Admin.create(config.adminHost, config.adminPort, metrics, {
      ready: () => gw!.readiness(),
      status: () => gw!.status(),
      dlq,
      commands: (limit, device) => gw?.commands?.recent(limit, device) ?? null
    }, logger, { token: adminToken }), broker, store)
    metrics.gauge('gateway_buffer_items', 'Items buffered per partition', ['partition'], (g) => {
      for (const s of store.partitionStats()) g.set({ partition: String(s.p) }, s.depth)
    })
    metrics.gauge('gateway_buffer_bytes', 'Bytes buffered per partition', ['partition'], (g) => {
      for (const s of store.partitionStats()) g.set({ partition: String(s.p) }, s.bytes)
    })
    metrics.gauge('gateway_dlq_items', 'Items in the dead-letter store', [], (g) => g.set(store.dlqCount))
    metrics.gauge('gateway_connected_clients', 'Connected MQTT clients', [], (g) => g.set(broker.connected))
    const commandMetrics = new CommandMetrics(metrics.registry)
    let commands: GatewayCommands | null = null
    if (config.commands === 'on') {
      const link = opts.commandLink ?? (config.upstream.length ? createCommandLink({ ...config, token, upstreamTls }, logger) : null)
      if (!link && config.upstream.length) logger.warn({ upstream: config.upstream }, 'commands on, but no command link for these upstream URLs: commands to devices are off')
      if (link) {
        commands = new GatewayCommands(store.db, link, broker, (device) => intake.commandFormat(device), config, commandMetrics, logger)
        await closeOnError(() => commands!.start(), link, admin, broker, store)
      }
    }
    gw = new Gateway(config, store, intake, broker, flusher, admin, metrics, logger.child({ component: 'gateway' }), commands)
    flusher.start()
    admission?.start()
    return gw
  }

  /**
   * /readyz. Without an upstream the gateway still takes, stores and acknowledges readings,
   * so it stays ready (200: an orchestrator may send devices to it; a store-only gateway or
   * one whose upstream is added later is a real setup), but `delivery` is false and the
   * reasons say that nothing will leave the box.
   */
  readiness (): Readiness {
    const reasons: string[] = []
    if (this.closing) reasons.push('shutting down')
    if (!this.broker.listening) reasons.push('broker not listening')
    const storeErr = this.store.writeFailure
    if (storeErr) reasons.push(`store cannot write: ${storeErr.message}`)
    const delivery = this.flusher.hasUpstream
    if (delivery && !this.flusher.ready) reasons.push(`upstream ${this.flusher.status().state}: ${this.flusher.status().lastError ?? ''}`)
    const ready = reasons.length === 0
    if (!delivery) reasons.push(NO_UPSTREAM)
    return { ready, delivery, reasons }
  }

  async status (): Promise<unknown> {
    return {
      gateway: this.config.gatewayId,
      epoch: this.store.epoch,
      buffered: { items: this.store.items, bytes: this.store.bytes },
      bufferFull: this.config.fullPolicy === 'block' && this.store.full,
      dlq: { items: this.store.dlqCount, bytes: this.store.dlqBytes },
      evictedPending: this.store.pendingEvicted().length,
      partitions: this.store.partitionStats().map((s) => ({
        p: s.p, depth: s.depth, bytes: s.bytes, nextSeq: s.nextSeq, floor: s.head, oldestAgeMs: this.flusher.oldestAgeMs(s.p), inFlight: s.inFlight
      })),
      upstream: this.flusher.hasUpstream ? this.flusher.status() : { ...this.flusher.status(), state: 'none', lastError: NO_UPSTREAM },
      delivery: this.flusher.hasUpstream,
      clients: { connected: this.broker.connected },
      ...(this.intake.admission ? { overload: this.intake.admission.status() } : {}),
      ...(this.commands ? { commands: this.commands.status() } : {}),
      unstoredPublishes: this.broker.unstored(),
      config: { durability: this.config.durability, ackMode: this.config.ackMode, fullPolicy: this.config.fullPolicy, partitions: this.store.partitions }
    }
  }

  /**
   * Graceful stop: no new connections, let the intake's writes and PUBACKs in progress
   * finish, stop the commands (no delivery or report more; their writes finish), close the broker (clients resend anything unacked to the next process), stop
   * flushing, close LevelDB.
   */
  close (): Promise<void> {
    this.closing ??= (async () => {
      this.broker.stopAccepting()
      this.intake.admission?.close() // readings waiting for admission go on now (written before the broker closes)
      await new Promise<void>((resolve) => this.store.sync(() => resolve()))
      // commands: no delivery, no report from here on; answers arriving now are refused
      // unacknowledged (the device sends them again to the next process)
      await this.commands?.close()
      await this.broker.close()
      await this.flusher.close()
      await this.admin.close()
      await this.store.close()
      this.log.info('gateway closed')
    })()
    return this.closing
  }
}

/**
 * The intake's overload admission (intake/admission.ts) on the gateway's own sources: the
 * store's answered items and backlog, the event loop's utilisation, the broker's read gates.
 */
function overloadAdmission (ratio: number, store: Store, metrics: Metrics, logger: Logger): Admission {
  const log = logger.child({ component: 'intake' })
  const a = new Admission(ratio, {
    uploaded: () => store.answered,
    backlog: () => store.items,
    busy: loopBusy(),
    now: () => performance.now(),
    gateOf: (client) => readGateOf(client as Client),
    failed: (client, err) => {
      const c = client as Client
      log.error({ err, clientId: c.id }, 'handling a reading that waited for admission failed; closing that connection (the device resends what was not acknowledged)')
      c.close()
    }
  }, (limiting, limitPerS, why) => {
    if (limiting && why) log.warn({ limitPerS, why }, 'overloaded: readings admitted at a limited rate so the upload keeps its share of the event loop')
    else if (!limiting) log.info({ why }, 'overload over: readings admitted without limit')
  })
  metrics.gauge('gateway_intake_admission_limit', 'Readings per second the intake admits while overloaded (0: no limit)', [], (g) => g.set(a.limiting ? a.status().limitPerS ?? 0 : 0))
  metrics.gauge('gateway_intake_held_readings', 'Readings waiting for admission (overload); their PUBACKs wait too', [], (g) => g.set(a.held))
  // counters of the admission's own cumulative counts, read at scrape time
  const cumulative = (name: string, help: string, read: () => number): void => {
    let seen = 0
    new Counter({ name, help, registers: [metrics.registry], collect () { const v = read(); this.inc(v - seen); seen = v } }) // eslint-disable-line no-new
  }
  cumulative('gateway_intake_held_total', 'Readings that waited for admission (overload), cumulative', () => a.heldTotal)
  cumulative('gateway_intake_overload_episodes_total', 'Times the intake started admitting at a limited rate (overload)', () => a.episodes)
  return a
}
