/**
 * device-sim CLI: `node --import tsx device-sim/main.ts --broker URL --devices N ...`.
 * Logs pino JSON on stdout (`ready`, `progress`, `report`, `audit`); the live view and the
 * human summary go to stderr. Exit code: 0 ok, 1 audit failed (acknowledged readings lost,
 * duplicated, out of order or unexpected; or, with --commands-rate, a command lost, with
 * two final states, a result that is not the device's answer, or executed twice), 2 bad
 * config or a run error. SIGINT/SIGTERM stop
 * gracefully and still report (and audit); a second signal exits at once.
 */
import { readFile } from 'node:fs/promises'
import { ConfigError, VERSION } from '../protocol/index.ts'
import { configFileArg, createLogger, helpText, LOG_ENV_HELP } from '../common/index.ts'
import { ENV_PREFIX, parseSimConfig, simSchema, type SimConfig } from './config.ts'
import { auditCommands, CommandDriver, createSimulation, fetchCommandViews, formatAudit, formatCommandAudit, formatReport, runAudit, startProgress, waitForDrain, writeReport, type CommandKind } from './index.ts'

async function loadConfig (argv: string[]): Promise<SimConfig> {
  const file = configFileArg(argv, process.env, ENV_PREFIX)
  const json = file ? JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown> : undefined
  return parseSimConfig({ argv, env: process.env, ...(json ? { file: json } : {}) })
}

async function main (): Promise<number> {
  if (process.argv.includes('--version')) { process.stdout.write(`device-sim ${VERSION}\n`); return 0 }
  let config: SimConfig
  try {
    config = await loadConfig(process.argv.slice(2))
  } catch (err) {
    process.stderr.write(`device-sim: ${(err as Error).message}\n`)
    return 2
  }
  if (config.help) {
    process.stdout.write(`Usage: device-sim [flags]\n\n${helpText(simSchema, ENV_PREFIX)}\n  --version\n      print the version\n\nenvironment:\n${LOG_ENV_HELP}`)
    return 0
  }
  const log = createLogger({}).child({ component: 'device-sim' })
  const sim = createSimulation(config)
  let signals = 0
  const onSignal = (sig: string): void => {
    if (++signals > 1) process.exit(130)
    log.info({ signal: sig }, 'stopping')
    void sim.stop()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)

  await sim.start()
  log.info({ devices: config.devices, broker: config.broker, rate: config.rate, boot: sim.devices[0]?.currentBoot }, 'ready')
  sim.waitConnected(120_000).then(() => log.info({ devices: config.devices }, 'all devices connected'), (err: Error) => log.warn({ err }, 'not every device connected'))
  // a broker that is not there is a failure, not a run with "connects 0"
  const t0 = Date.now()
  while (sim.stats.counters.connects === 0 && signals === 0) {
    if (Date.now() - t0 > config.connectTimeoutS * 1000) {
      // nothing was ever sent, nothing to wait for: main() exits the process
      process.stderr.write(`device-sim: cannot connect to ${config.broker} within ${config.connectTimeoutS} s (${sim.stats.lastConnectError ?? 'no answer'}): is the gateway running there?\n`)
      return 2
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  const commandsIngest = config.commandsIngest ?? config.audit
  if (config.commandsRate > 0 && commandsIngest === undefined) {
    process.stderr.write('device-sim: --commands-rate needs --commands-ingest (or --audit): the ingest\'s command API\n')
    await sim.stop()
    return 2
  }
  const driver = config.commandsRate > 0 && commandsIngest !== undefined
    ? new CommandDriver({ ingestUrl: commandsIngest, token: config.commandToken, rate: config.commandsRate, waitMs: config.commandsWaitMs, ttlMs: config.commandsTtlMs, kinds: config.commandsKinds.split(',') as CommandKind[], targets: sim.onlineIds })
    : null
  // commands start once every device is connected (or after 60 s): a bench's first numbers
  // must not be those of a fleet still connecting
  if (driver) void sim.waitConnected(60_000).catch(() => {}).then(() => { driver.start() })
  const progress = startProgress({ snapshot: sim.snapshot, mode: config.progress, intervalS: config.progressIntervalS, log: (f, m) => log.info(driver ? { ...f, commands: driver.counts } : f, m), ...(driver ? { extra: () => [driver.line()] } : {}) })

  await sim.done
  // devices stay connected while the last commands finish: their answers need them
  const open = driver ? await driver.finish(config.commandsFinalTimeoutS * 1000) : 0
  await sim.stop()
  progress.stop()
  const report = sim.report()
  process.stderr.write(formatReport(report) + '\n')
  log.info({ totals: report.totals, pacing: report.pacing, pubackMs: report.pubackMs, receiptMs: report.receiptMs }, 'report')

  let code = 0
  if (report.totals.connects === 0) {
    process.stderr.write(`device-sim: no device ever connected to ${config.broker} (${sim.stats.lastConnectError ?? 'no answer'})\n`)
    code = 2
  }
  if (config.audit) {
    const token = config.auditToken
    // the ingest's read side wants a read token (docs/security-tls.md)
    const authFetch: typeof fetch = (input, init) => fetch(input, token === undefined ? init : { ...init, headers: { ...init?.headers as Record<string, string> | undefined, authorization: `Bearer ${token}` } })
    const drain = await waitForDrain({
      fetch: authFetch,
      ingestUrl: config.audit,
      gatewayAdmin: config.gatewayAdmin,
      timeoutMs: config.auditTimeoutS * 1000,
      onProgress: (p) => { if (p.waitedMs > 0 && Math.round(p.waitedMs / 250) % 8 === 0) log.info(p, 'waiting for the gateway to drain') }
    })
    if (!drain.settled) log.warn(drain, 'gateway did not drain before --audit-timeout-s; auditing anyway')
    try {
      const audit = await runAudit(sim.records(), {
        fetch: authFetch,
        ingestUrl: config.audit,
        concurrency: config.auditConcurrency,
        onProgress: (p) => { if (p.done % 1000 === 0 || p.done === p.total) log.info(p, 'audit progress') }
      })
      report.audit = audit
      process.stderr.write(formatAudit(audit) + '\n')
      log.info({ ok: audit.ok, totals: audit.totals, failedDevices: audit.failedDevices, drained: drain.settled }, 'audit')
      code = audit.ok ? 0 : 1
    } catch (err) {
      log.error({ err }, 'audit could not run')
      code = 2
    }
  }
  if (driver && commandsIngest !== undefined) {
    if (open > 0) log.warn({ open }, 'commands not final within --commands-final-timeout-s')
    try {
      const views = await fetchCommandViews(commandsIngest, driver.sent.map((c) => c.id), { token: config.commandToken })
      const ca = auditCommands(driver.sent, views, sim.commandRecords())
      report.commandAudit = { ...ca, driver: driver.counts, summary: driver.summary() }
      process.stderr.write(formatCommandAudit(ca) + '\n')
      log.info({ ok: ca.ok, counts: ca.counts, driver: driver.counts, summary: driver.summary() }, 'command audit')
      if (!ca.ok && code === 0) code = 1
    } catch (err) {
      log.error({ err }, 'command audit could not run')
      code = 2
    }
  }
  if (config.report) {
    await writeReport(config.report, report)
    log.info({ file: config.report }, 'report written')
  }
  return code
}

// exit explicitly: a broker that keeps a socket half-open must not keep the CLI alive
main().then((code) => { process.exit(code) }, (err: unknown) => {
  if (err instanceof ConfigError) process.stderr.write(`device-sim: ${err.message}\n`)
  else process.stderr.write(`device-sim: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(2)
})
