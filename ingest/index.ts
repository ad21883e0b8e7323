/**
 * Reference cloud ingest (docs/design.md section 7): `createIngest(options)` opens the sink,
 * starts the HTTP server and resolves when it accepts work; with `mqttBroker` it also takes
 * batches from a cloud broker (mqtt-consumer.ts). `close()` is idempotent: it stops taking
 * batches from the broker, stops accepting, lets in-flight requests finish (up to
 * shutdownTimeoutMs), then closes the sink.
 */
import { randomInt } from 'node:crypto'
import { once } from 'node:events'
import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { pino, type Logger } from 'pino'
import { ConfigError } from '../protocol/index.ts'
import { Chaos } from './chaos.ts'
import { CommandAuth } from './commands/auth.ts'
import { Commands } from './commands/index.ts'
import { LevelDbCommandStore } from './commands/leveldb-store.ts'
import { CommandsMqtt } from './commands/mqtt.ts'
import type { CommandStore } from './commands/store.ts'
import { checkProtocols, resolvePostgresUrl, resolveTokens, withDefaults, type IngestConfig, type IngestOptions } from './config.ts'
import { createMetrics, type IngestMetrics } from './metrics.ts'
import { checkMqttConsumerConfig, MqttConsumer } from './mqtt-consumer.ts'
import { hashSecret, ReadAuth } from './read-auth.ts'
import { createIngestServer, type ServerDeps } from './server.ts'
import { LevelDbSink } from './sinks/leveldb.ts'
import type { Sink } from './sinks/types.ts'
import { ingestTlsConfig, loadContext, reloadTls } from './tls.ts'

export type { IngestConfig, IngestOptions } from './config.ts'
export type { Sink, StoreRequest, ItemOutcome, DeviceQuery, DevicePage, Stats, StoredReading } from './sinks/types.ts'

export type Ingest = {
  port: number
  host: string
  config: IngestConfig
  sink: Sink
  metrics: IngestMetrics
  /** Seed of the fault injection PRNG actually used. */
  chaosSeed: number
  /** 'https' with --tls-cert (tls.ts). */
  scheme: 'http' | 'https'
  /**
   * Commands to devices (commands/index.ts) over the command store (LevelDB with sink
   * leveldb, the PostgreSQL command tables with sink postgres).
   */
  commands: Commands
  /** Commands and reports over the broker (`mqttBroker`), else null. */
  commandsMqtt: CommandsMqtt | null
  /** The broker consumer (`mqttBroker`), else null. */
  mqtt: MqttConsumer | null
  /** Re-reads the TLS files for new handshakes (SIGHUP); false without TLS or on failure. */
  reloadTls: () => Promise<boolean>
  close: () => Promise<void>
}

/**
 * `deps.commandStore`: the store of commands to devices; by default with sink leveldb a
 * LevelDB one in `<dataDir>/commands`, with sink postgres the command tables of the same
 * database (every ingest process on it shares them). Closed with the ingest.
 */
export async function createIngest (options: IngestOptions = {}, deps: { logger?: Logger, commandStore?: CommandStore } = {}): Promise<Ingest> {
  const config = withDefaults(options)
  const log = deps.logger ?? pino({ level: 'silent' })
  checkProtocols(config)
  checkMqttConsumerConfig(config)
  const mqttTls = await readMqttFiles(config)
  const postgresUrl = await resolvePostgresUrl(config, process.env)
  const secrets = await resolveTokens(config)
  const readAuth = await ReadAuth.create(config)
  const commandAuth = await CommandAuth.create(config, new Set([...secrets.keys(), ...config.readToken.map((t) => t.slice(t.indexOf(':') + 1))].map(hashSecret)))
  const tlsConfig = ingestTlsConfig(config)
  const tls = tlsConfig ? { config: tlsConfig, context: await loadContext(tlsConfig) } : null
  const tokens = new Map([...secrets].map(([secret, gw]) => [hashSecret(secret), gw]))
  let sink: Sink | undefined
  let commandStore: CommandStore | undefined
  let liveCommands: Commands | undefined
  const metrics = createMetrics(() => sink, () => commandStore, () => liveCommands && { caller: liveCommands.waiters, gateway: liveCommands.pollers })
  sink = postgresUrl !== undefined
    // loaded only for this sink: the leveldb ingest starts without pg and its modules
    ? await (await import('./sinks/postgres.ts')).PostgresSink.open({
      url: postgresUrl,
      poolMax: config.postgresPoolMax,
      onState: (state, err) => { log.child({ component: 'postgres' })[state === 'up' ? 'info' : 'warn']({ state, err }, state === 'up' ? 'PostgreSQL reachable again.' : 'PostgreSQL unreachable: answering retry, reconnecting.') },
      onCommit: (seconds) => { metrics.commitRequests.observe(1); metrics.commitSeconds.observe(seconds) }
    })
    : await LevelDbSink.open({
      dataDir: config.dataDir,
      maxEpochsPerGateway: config.dedupEpochsPerGateway,
      // readings written before layout 4 do not name their fleet: their gateway's, as configured now
      fleetOf: (gw) => readAuth.fleetOf(gw),
      onUpgrade: (from, deleted) => { log.child({ component: 'leveldb' }).warn({ from, to: '4', deletedIndexKeys: deleted, dataDir: config.dataDir }, 'Upgraded the ingest store layout.') },
      onCommit: (requests, _ops, seconds) => { metrics.commitRequests.observe(requests); metrics.commitSeconds.observe(seconds) }
    })
  const openSink = sink
  try {
    commandStore = deps.commandStore ?? (postgresUrl !== undefined
      // the command tables beside the readings: every ingest process on the database shares them
      ? await (await import('./commands/postgres-store.ts')).PostgresCommandStore.open({
        url: postgresUrl,
        poolMax: Math.max(2, Math.ceil(config.postgresPoolMax / 4)),
        onState: (state, err) => { log.child({ component: 'postgres-commands' })[state === 'up' ? 'info' : 'warn']({ state, err }, state === 'up' ? 'PostgreSQL reachable again (commands).' : 'PostgreSQL unreachable (commands): command calls answer 503.') }
      })
      : await LevelDbCommandStore.open({ dataDir: config.dataDir }))
  } catch (err) {
    await openSink.close()
    throw err
  }
  const openCommandStore = commandStore
  const commands = new Commands(openCommandStore, {
    ttlMs: config.commandTtlMs,
    maxTtlMs: config.commandMaxTtlMs,
    maxWaitMs: config.commandMaxWaitMs,
    maxArgsBytes: config.commandMaxArgsBytes,
    maxPendingPerDevice: config.commandMaxPendingPerDevice,
    rate: config.commandRate,
    presenceTtlMs: config.presenceTtlMs,
    expiryGraceMs: config.commandExpiryGraceMs
  }, {
    log: log.child({ component: 'commands' }),
    transition: (state) => metrics.commandTransitions.inc({ state }),
    report: (code) => metrics.commandReports.inc({ code: String(code) }),
    refusal: (reason) => metrics.commandRefusals.inc({ reason })
  })
  liveCommands = commands
  const chaosSeed = config.chaosSeed ?? randomInt(0, 0xffffffff)
  const chaos = new Chaos({
    retryRate: config.chaosRetryRate,
    rejectRate: config.chaosRejectRate,
    failRate: config.chaosFailRate,
    dropRate: config.chaosDropRate,
    latencyMs: config.chaosLatencyMs,
    seed: chaosSeed
  })
  if (chaos.enabled) log.child({ component: 'chaos' }).warn({ ...chaos.config }, 'Fault injection is on.')
  const serverDeps: ServerDeps = { config, tokens, sink: openSink, chaos, metrics, log: log.child({ component: 'http' }), readAuth, tls, commands: { commands, auth: commandAuth } }
  const http = createIngestServer(serverDeps)
  const { server } = http
  try {
    server.listen(config.port, config.host)
    await once(server, 'listening')
  } catch (err) {
    await commands.close()
    await openCommandStore?.close()
    await openSink.close()
    throw err
  }
  const port = (server.address() as AddressInfo).port
  // the same deps (sink, chaos, metrics, the page's recent readings) as the HTTP batches
  const mqtt = config.mqttBroker === undefined ? null : MqttConsumer.create({ ...config, ...mqttTls }, { ...serverDeps, log })
  serverDeps.mqttStatus = () => mqtt?.status() ?? null
  const commandsMqtt = config.mqttBroker === undefined ? null : CommandsMqtt.create({ ...config, ...mqttTls }, { commands, readAuth, metrics, log })
  serverDeps.commandsMqttStatus = () => commandsMqtt?.status() ?? null

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await commands.close() // answers the long polls and the waiting POSTs now
      await commandsMqtt?.close()
      await mqtt?.close()
      await http.stop(config.shutdownTimeoutMs)
      await openCommandStore?.close()
      await openSink.close()
    })()
    return closing
  }

  const tlsLog = log.child({ component: 'tls' })
  return { port, host: config.host, config, sink: openSink, metrics, chaosSeed, commands, commandsMqtt, mqtt, scheme: tls ? 'https' : 'http', reloadTls: () => reloadTls(server, tls, tlsLog), close }
}

/** CA, client certificate, key and password of the broker connection, read from their files. */
async function readMqttFiles (c: IngestConfig): Promise<{ tls: { ca?: Buffer, cert?: Buffer, key?: Buffer }, password: string }> {
  const read = async (field: string, path: string): Promise<Buffer> => {
    try { return await readFile(path) } catch (err) { throw new ConfigError(field, `cannot read ${path}: ${(err as Error).message}`) }
  }
  if ((c.mqttCert === undefined) !== (c.mqttKey === undefined)) throw new ConfigError(c.mqttCert === undefined ? 'mqttCert' : 'mqttKey', 'broker mTLS needs both --mqtt-cert and --mqtt-key')
  const tls: { ca?: Buffer, cert?: Buffer, key?: Buffer } = {}
  if (c.mqttCa !== undefined) tls.ca = await read('mqttCa', c.mqttCa)
  if (c.mqttCert !== undefined) tls.cert = await read('mqttCert', c.mqttCert)
  if (c.mqttKey !== undefined) tls.key = await read('mqttKey', c.mqttKey)
  const password = c.mqttPasswordFile === undefined ? '' : (await read('mqttPasswordFile', c.mqttPasswordFile)).toString('utf8').trim()
  return { tls, password }
}
