/**
 * Reference cloud ingest (DESIGN.md section 7): `createIngest(options)` opens the sink,
 * starts the HTTP server and resolves when it accepts work. `close()` is idempotent: it
 * stops accepting, lets in-flight requests finish (up to shutdownTimeoutMs), then closes
 * the sink.
 */
import { randomInt } from 'node:crypto'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { pino, type Logger } from 'pino'
import { Chaos } from './chaos.ts'
import { checkProtocols, resolvePostgresUrl, resolveTokens, withDefaults, type IngestConfig, type IngestOptions } from './config.ts'
import { createMetrics, type IngestMetrics } from './metrics.ts'
import { createIngestServer, hashSecret } from './server.ts'
import { LevelDbSink } from './sinks/leveldb.ts'
import { PostgresSink } from './sinks/postgres.ts'
import type { Sink } from './sinks/types.ts'

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
  close: () => Promise<void>
}

export async function createIngest (options: IngestOptions = {}, deps: { logger?: Logger } = {}): Promise<Ingest> {
  const config = withDefaults(options)
  const log = deps.logger ?? pino({ level: 'silent' })
  checkProtocols(config)
  const postgresUrl = await resolvePostgresUrl(config, process.env)
  const secrets = await resolveTokens(config)
  const tokens = new Map([...secrets].map(([secret, gw]) => [hashSecret(secret), gw]))
  let sink: Sink | undefined
  const metrics = createMetrics(() => sink)
  sink = postgresUrl !== undefined
    ? await PostgresSink.open({
      url: postgresUrl,
      poolMax: config.postgresPoolMax,
      onState: (state, err) => { log.child({ component: 'postgres' })[state === 'up' ? 'info' : 'warn']({ state, err }, state === 'up' ? 'PostgreSQL reachable again.' : 'PostgreSQL unreachable: answering retry, reconnecting.') },
      onCommit: (seconds) => { metrics.commitRequests.observe(1); metrics.commitSeconds.observe(seconds) }
    })
    : await LevelDbSink.open({
      dataDir: config.dataDir,
      onCommit: (requests, _ops, seconds) => { metrics.commitRequests.observe(requests); metrics.commitSeconds.observe(seconds) }
    })
  const openSink = sink
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
  const http = createIngestServer({ config, tokens, sink: openSink, chaos, metrics, log: log.child({ component: 'http' }) })
  const { server } = http
  try {
    server.listen(config.port, config.host)
    await once(server, 'listening')
  } catch (err) {
    await openSink.close()
    throw err
  }
  const port = (server.address() as AddressInfo).port

  let closing: Promise<void> | undefined
  const close = (): Promise<void> => {
    closing ??= (async () => {
      await http.stop(config.shutdownTimeoutMs)
      await openSink.close()
    })()
    return closing
  }

  return { port, host: config.host, config, sink: openSink, metrics, chaosSeed, close }
}
