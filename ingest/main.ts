/**
 * CLI: `node --import tsx ingest/main.ts [flags]` (npm run ingest). See docs/ingest.md.
 * Exit codes: 0 after a clean shutdown, 1 on a startup or runtime failure, 2 on bad config.
 */
import { ConfigError, VERSION } from '../protocol/index.ts'
import { loadConfig, usage } from './config.ts'
import { createIngest } from './index.ts'
import { createLogger, onStopSignals } from '../common/index.ts'

// base `service`, not `component`: child loggers add their own component (one key a line)
const log = createLogger({ base: { service: 'ingest' } })

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv.includes('--version')) { process.stdout.write(`ingest ${VERSION}\n`); return }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage())
    return
  }
  let config
  try {
    config = await loadConfig(argv, process.env)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`ingest: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
  let ingest
  try {
    ingest = await createIngest(config, { logger: log })
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`ingest: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
  const { port, host, chaosSeed, scheme } = ingest
  const chaos = config.chaosRetryRate > 0 || config.chaosRejectRate > 0 || config.chaosFailRate > 0 || config.chaosDropRate > 0 || config.chaosLatencyMs > 0
  // The ready line is a contract (harnesses wait for it), so it is written even when
  // LOG_LEVEL is above info; only `silent` suppresses it.
  const readyLog = log.isLevelEnabled('info') || log.level === 'silent' ? log : createLogger({ level: 'info', base: { service: 'ingest' } })
  readyLog.info({ port, host, scheme, sink: config.sink, dataDir: config.dataDir, pid: process.pid, ...(config.mqttBroker !== undefined ? { mqttBroker: config.mqttBroker } : {}), ...(chaos ? { chaosSeed } : {}) }, 'ready')

  // one Ctrl-C under `npm run` arrives twice within milliseconds: that copy is not a second
  // signal (common/signals.ts)
  onStopSignals({
    onStop: (signal) => {
      log.info({ signal }, 'shutting down: finishing requests in progress')
      ingest.close().then(() => {
        log.info('stopped')
        process.exit(0)
      }, (err: unknown) => {
        log.error({ err }, 'shutdown failed')
        process.exit(1)
      })
    },
    onRepeat: (signal, afterMs) => { log.debug({ signal, afterMs }, 'repeated signal ignored: the same Ctrl-C') },
    onForce: (signal) => {
      log.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
  })
  // SIGHUP: new TLS certificate, key and CA for new handshakes (docs/security-tls.md)
  process.on('SIGHUP', () => { void ingest.reloadTls() })
}

main().catch((err: unknown) => {
  log.fatal({ err }, 'ingest failed to start')
  process.exit(1)
})
