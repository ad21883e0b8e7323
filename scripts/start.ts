/**
 * `npm start`: the whole path on one machine (docs/design.md section 9). Spawns the ingest CLI
 * (LevelDB sink) and the gateway CLI on free ports with a fresh random token, runs 100
 * simulated devices in-process against the gateway with a live status view, and on Ctrl-C
 * or after `--duration S`: stops the devices, waits (bounded) for the gateway to drain,
 * audits every acknowledged reading at the ingest and exits 0 only if none was lost or
 * duplicated. Child processes are always stopped (SIGTERM, then SIGKILL).
 *
 * Data lives under `--data-dir` (./data): ingest/, gateway/, logs/, last-report.json. A
 * second run keeps the old data and still audits correctly: every run starts new boots
 * (wall-clock ms), and the audit only looks at this run's boots. `--fresh` wipes the dir.
 *
 * `--sink postgres` stores into PostgreSQL: the server at `--postgres-url` (or
 * DATABASE_URL), else a throwaway one started here with its cluster in `{data-dir}/postgres`
 * (Debian's postgresql package; see scripts/throwaway-postgres.ts) and stopped at the end.
 *
 * Commands (docs/commands.md): at `--commands-rate` (5/s by default, 0 = off) commands go to
 * the ingest's command API for random online devices, synchronous, asynchronous and deferred
 * in turn, with a command token made here (`default:<random>`, given to the ingest as
 * INGEST_COMMAND_TOKEN, so an ingest without the command API starts as before and the
 * commands are then off, said so). At the end every command must reach exactly one final
 * state, a completed one's result must be the device's stored answer, and no device may have
 * executed an id twice: the exit code depends on it as on the readings' audit.
 *
 * `--upstream mqtt` puts a cloud MQTT broker between the gateway and the ingest: a throwaway
 * Mosquitto (Debian's mosquitto package; scripts/throwaway-mosquitto.ts) on a free loopback
 * port with its config in `{data-dir}/mosquitto`, the gateway publishing its batches there
 * (`--upstream-ack results` by default, or `broker`) and the ingest consuming them with
 * `--mqtt-broker` (docs/upstream-mqtt.md). The audit is the same.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { GATEWAY_ID_RE, VERSION } from '../protocol/index.ts'
import { configFileArg, helpText, onStopSignals, parseConfig, type ConfigOf } from '../common/index.ts'
import { ThrowawayPostgres } from './throwaway-postgres.ts'
import { ThrowawayMosquitto } from './throwaway-mosquitto.ts'
import { launcherNodeArgs } from './node-options.ts'
import { auditCommands, CommandDriver, createSimulation, fetchCommandViews, formatAudit, formatCommandAudit, formatReport, ingestRunLine, runAudit, simConfig, startProgress, waitForDrain, writeReport, type IngestCounts } from '../device-sim/index.ts'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')

const schema = {
  duration: { type: 'number', default: 0, min: 0, doc: 'seconds to run (0 = until Ctrl-C)' },
  devices: { type: 'int', default: 100, min: 1, max: 100_000, doc: 'simulated devices' },
  rate: { type: 'number', default: 1, min: 0.001, max: 1000, doc: 'readings per second per device' },
  churn: { type: 'number', default: 0, min: 0, max: 1, doc: 'per-device per-second probability of a disconnect or reboot' },
  payload: { type: 'enum', values: ['cbor', 'json'], default: 'cbor', doc: 'payload encoding' },
  dataDir: { type: 'string', default: './data', doc: 'where ingest/, gateway/, logs/ and last-report.json live' },
  fresh: { type: 'bool', default: false, doc: 'wipe --data-dir first' },
  sink: { type: 'enum', values: ['leveldb', 'postgres'], default: 'leveldb', doc: 'ingest sink; postgres without --postgres-url or DATABASE_URL starts a throwaway server' },
  postgresUrl: { type: 'string', doc: 'PostgreSQL URL for --sink postgres (default: DATABASE_URL, else a throwaway server)' },
  upstream: { type: 'enum', values: ['http', 'mqtt'], default: 'http', doc: 'how batches reach the ingest: http (directly) or mqtt (through a throwaway Mosquitto on a free port, docs/upstream-mqtt.md)' },
  upstreamAck: { type: 'enum', values: ['results', 'broker'], default: 'results', doc: 'with --upstream mqtt: results (the gateway deletes on the ingest\'s per-item results) or broker (on the broker\'s PUBACK)' },
  gatewayId: { type: 'string', default: 'gw1', pattern: GATEWAY_ID_RE, doc: 'gateway id' },
  mqttPort: { type: 'int', default: 0, min: 0, max: 65535, doc: 'gateway MQTT port (0 = a free port)' },
  adminPort: { type: 'int', default: 0, min: 0, max: 65535, doc: 'gateway admin port (0 = a free port)' },
  ingestPort: { type: 'int', default: 0, min: 0, max: 65535, doc: 'ingest port (0 = a free port)' },
  idPrefix: { type: 'string', default: 'dev-', pattern: /^[A-Za-z0-9._-]{0,50}$/, doc: 'device id prefix' },
  drainTimeoutS: { type: 'number', default: 60, min: 0, doc: 'max seconds to wait for the gateway to drain before the audit' },
  progress: { type: 'enum', values: ['auto', 'tty', 'line', 'off'], default: 'auto', doc: 'live view on a TTY, else a line every 5 s' },
  commandsRate: { type: 'number', default: 5, min: 0, max: 10_000, doc: 'commands per second to random online devices through the ingest\'s command API, sync, async and deferred mixed (0 = off); audited at the end' },
  commandsWaitMs: { type: 'int', default: 10_000, min: 1, max: 300_000, doc: 'the ?wait=MS of the synchronous commands' },
  commandsTtlMs: { type: 'int', default: 30_000, min: 1000, doc: 'ttlMs of each command' },
  help: { type: 'bool', default: false, doc: 'print this help' }
} as const
type StartConfig = ConfigOf<typeof schema>

type Proc = { name: string, proc: ChildProcess, ready: Record<string, unknown>, exited: Promise<number | null> }

const say = (s: string): void => { process.stderr.write(s + '\n') }

async function spawnCli (name: string, entry: string, args: string[], logFile: string, nodeArgs: string[] = [], env: Record<string, string> = {}): Promise<Proc> {
  // detached: the child gets its own process group, so the terminal's Ctrl-C reaches only
  // this script, which stops the devices, lets the gateway drain and audits before it
  // stops the children (they died with the SIGINT and the audit failed)
  const proc = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', join(ROOT, entry), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, detached: true })
  children.push(proc)
  const log = createWriteStream(logFile, { flags: 'a' })
  proc.stderr!.pipe(log)
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)))
  const ready = await new Promise<Record<string, unknown>>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${name} not ready within 30 s (see ${logFile})`)), 30_000)
    void exited.then((code) => { clearTimeout(timer); rej(new Error(`${name} exited (${code}) before ready (see ${logFile})`)) })
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      log.write(l + '\n')
      try {
        const o = JSON.parse(l) as Record<string, unknown>
        if (o.msg === 'ready') { clearTimeout(timer); res(o) }
      } catch {}
    })
  })
  return { name, proc, ready, exited }
}

const children: ChildProcess[] = []
process.on('exit', () => { for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL') })

async function stopChild (p: Proc, timeoutMs = 8000): Promise<void> {
  if (p.proc.exitCode !== null || p.proc.signalCode !== null) return
  p.proc.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const killed = await Promise.race([p.exited.then(() => false), new Promise<boolean>((r) => { timer = setTimeout(() => r(true), timeoutMs) })])
  clearTimeout(timer)
  if (killed) { say(`${p.name} did not stop within ${timeoutMs} ms: SIGKILL`); p.proc.kill('SIGKILL'); await p.exited }
}

async function getJson (url: string): Promise<Record<string, unknown> | null> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2000) })
    return r.ok ? await r.json() as Record<string, unknown> : null
  } catch { return null }
}

async function main (): Promise<number> {
  const argv = process.argv.slice(2)
  if (argv.includes('--version')) { process.stdout.write(`edge-gateway ${VERSION}\n`); return 0 }
  const file = configFileArg(argv, process.env, 'START')
  const c: StartConfig = parseConfig(schema, { argv, env: process.env, envPrefix: 'START', ...(file ? { file: JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown> } : {}) })
  if (c.help) { process.stdout.write(`Usage: npm start -- [flags]\n\n${helpText(schema, 'START')}\n`); return 0 }
  const dataDir = resolve(c.dataDir)
  if (c.fresh) await rm(dataDir, { recursive: true, force: true })
  await mkdir(join(dataDir, 'logs'), { recursive: true })
  const token = randomBytes(18).toString('base64url')
  const commandToken = `default:${randomBytes(18).toString('base64url')}`
  // a cold start (TypeScript compiled on first load, LevelDB opened) takes seconds: say what
  // is happening, so an empty terminal does not look hung
  const t0 = Date.now()
  const took = (): string => `${((Date.now() - t0) / 1000).toFixed(1)} s`
  say(`npm start: the ingest, the gateway and ${c.devices} simulated devices on this machine; data in ${dataDir}`)

  const procs: Proc[] = []
  let pgServer: ThrowawayPostgres | undefined
  let mosquitto: ThrowawayMosquitto | undefined
  let sim: ReturnType<typeof createSimulation> | undefined
  let interrupted = false
  // `npm start` forwards the SIGINT the terminal already sent us: one Ctrl-C arrives twice
  // (common/signals.ts folds the copy into the first)
  onStopSignals({
    onStop: () => {
      interrupted = true
      say('\nstopping the devices (Ctrl-C again to quit at once)...')
      void sim?.stop()
    },
    onForce: () => { say('second signal: stopping now'); process.exit(130) }
  })

  try {
    const sinkArgs: string[] = []
    if (c.sink === 'postgres') {
      let url = c.postgresUrl ?? process.env.DATABASE_URL
      if (url === undefined) {
        await mkdir(join(dataDir, 'postgres'), { recursive: true })
        say('starting a throwaway PostgreSQL...')
        pgServer = await ThrowawayPostgres.start({ dir: join(dataDir, 'postgres') })
        url = pgServer.url()
        say(`postgres ${url}  (throwaway server, cluster in ${join(dataDir, 'postgres')}; psql ${url})`)
      }
      sinkArgs.push('--sink', 'postgres', '--postgres-url', url)
    }
    const mqttIngestArgs: string[] = []
    if (c.upstream === 'mqtt') {
      const dir = join(dataDir, 'mosquitto')
      await mkdir(dir, { recursive: true })
      say('starting a throwaway Mosquitto (the cloud MQTT broker)...')
      mosquitto = await ThrowawayMosquitto.start({ dir, detached: true })
      children.push(mosquitto.proc)
      say(`cloud    ${mosquitto.url}  (throwaway Mosquitto, config ${join(dir, 'mosquitto.conf')}; mosquitto_sub -L '${mosquitto.url}/gateways/#' -v)`)
      // the client id is per run: a stale session of an earlier run's broker cannot exist, but
      // a second ingest of the same data dir must not take this one's session
      mqttIngestArgs.push('--mqtt-broker', mosquitto.url, '--mqtt-client-id', `ingest-${process.pid}`)
    }
    say(`starting the ingest (${c.sink}; log ${join(dataDir, 'logs', 'ingest.log')})...`)
    const ingest = await spawnCli('ingest', 'ingest/main.ts', ['--port', String(c.ingestPort), '--data-dir', join(dataDir, 'ingest'), '--token', `${c.gatewayId}:${token}`, ...sinkArgs, ...mqttIngestArgs], join(dataDir, 'logs', 'ingest.log'), [], { INGEST_COMMAND_TOKEN: commandToken })
    procs.push(ingest)
    const ingestUrl = `http://127.0.0.1:${String(ingest.ready.port)}`
    // the ingest's counts are for its whole data dir, earlier runs included: the view shows
    // this run's, against what was there before the gateway started
    const before = (await getJson(`${ingestUrl}/v1/stats`)) as IngestCounts | null
    // over MQTT the broker is anonymous on loopback: the gateway sends no token
    const upstreamArgs = mosquitto ? ['--upstream', mosquitto.url, '--upstream-ack', c.upstreamAck] : ['--upstream', ingestUrl, '--token', token]
    say(`starting the gateway (ingest ready after ${took()}; log ${join(dataDir, 'logs', 'gateway.log')})...`)
    const gateway = await spawnCli('gateway', 'gateway/main.ts', ['--gateway-id', c.gatewayId, '--data-dir', join(dataDir, 'gateway'), '--mqtt-port', String(c.mqttPort), '--admin-port', String(c.adminPort), ...upstreamArgs], join(dataDir, 'logs', 'gateway.log'), launcherNodeArgs(ROOT)) // the V8 options of the installed gateway (bin/gateway)
    procs.push(gateway)
    const brokerUrl = `mqtt://127.0.0.1:${String(gateway.ready.mqttPort)}`
    const adminUrl = `http://127.0.0.1:${String(gateway.ready.adminPort)}`
    say(`ready after ${took()}:`)
    say(`ingest   ${ingestUrl}  (query: ${ingestUrl}/v1/stats, ${ingestUrl}/v1/devices/${c.idPrefix}0000/readings)`)
    say(`gateway  mqtt ${brokerUrl}  admin ${adminUrl}/status  ${adminUrl}/metrics`)
    say(`pages    gateway ${adminUrl}/  ingest ${ingestUrl}/  (open in a browser)`)
    say(`data     ${dataDir}  (logs in ${join(dataDir, 'logs')})`)
    if (interrupted) return 130

    // an ingest without the command API answers its routes 404: the commands are off then
    const commandSecret = commandToken.slice(commandToken.indexOf(':') + 1)
    let commandsOn = false
    try {
      const r = await fetch(`${ingestUrl}/v1/commands?limit=1`, { headers: { authorization: `Bearer ${commandSecret}` }, signal: AbortSignal.timeout(5000) })
      commandsOn = r.status === 200
      if (!commandsOn) say(`commands off: the ingest answers GET /v1/commands with ${r.status} (no command API?)`)
    } catch (err) { say(`commands off: ${(err as Error).message}`) }
    sim = createSimulation(simConfig({ broker: brokerUrl, devices: c.devices, rate: c.rate, duration: c.duration, churn: c.churn, payload: c.payload, idPrefix: c.idPrefix, progress: 'off' }))
    say(`devices  ${c.devices} x ${c.rate}/s, boot ${sim.devices[0]!.currentBoot}${c.duration ? `, for ${c.duration} s` : ', until Ctrl-C'}`)
    const s0 = sim
    if (commandsOn) say(`commands ${ingestUrl}/v1/devices/{id}/commands  (command token: curl -H 'authorization: Bearer ${commandSecret}' ${ingestUrl}/v1/commands)`)
    const driver = commandsOn && c.commandsRate > 0 ? new CommandDriver({ ingestUrl, token: commandSecret, rate: c.commandsRate, waitMs: c.commandsWaitMs, ttlMs: c.commandsTtlMs, targets: () => s0.onlineIds() }) : null
    if (driver) say(`         ${c.commandsRate}/s to random online devices: sync (?wait=${c.commandsWaitMs}), async and deferred in turn`)
    let gw: Record<string, unknown> | null = null
    let st: Record<string, unknown> | null = null
    const poll = setInterval(() => { void getJson(`${adminUrl}/status`).then((v) => { gw = v }); void getJson(`${ingestUrl}/v1/stats`).then((v) => { st = v }) }, 1000)
    poll.unref()
    const extra = (): string[] => {
      const g = gw as { buffered?: { items?: number }, upstream?: { state?: string }, clients?: { connected?: number } } | null
      return [
        `gateway backlog ${g?.buffered?.items ?? '?'} items  upstream ${g?.upstream?.state ?? '?'}  clients ${g?.clients?.connected ?? '?'}`,
        ingestRunLine(before, st as IngestCounts | null),
        ...(driver ? [driver.line()] : []),
        `page    ${adminUrl}/  (ingest ${ingestUrl}/)`
      ]
    }
    const progress = startProgress({
      snapshot: sim.snapshot,
      mode: c.progress,
      intervalS: 5,
      extra,
      log: (f) => say(JSON.stringify({ msg: 'progress', ...f, status: extra() }))
    })
    await sim.start()
    driver?.start()
    await sim.done
    // the devices stay online while the last commands finish: their answers need them
    if (driver) {
      say(`waiting for ${driver.open} commands to reach a final state (at most ${c.drainTimeoutS} s)...`)
      await driver.finish(c.drainTimeoutS * 1000)
    }
    await sim.stop()
    progress.stop()
    clearInterval(poll)
    const report = sim.report()
    say(formatReport(report))

    const beforeTotal = (before?.stored ?? 0) + (before?.duplicates ?? 0) + (before?.rejected ?? 0)
    say(`waiting for the gateway to drain (at most ${c.drainTimeoutS} s)...`)
    let lastSay = 0
    const drain = await waitForDrain({
      ingestUrl,
      gatewayAdmin: adminUrl,
      timeoutMs: c.drainTimeoutS * 1000,
      onProgress: (p) => { if (p.waitedMs - lastSay >= 2000) { lastSay = p.waitedMs; say(`  backlog ${p.gatewayBuffered ?? '?'} items, ingest answered ${p.ingestTotal === undefined ? '?' : p.ingestTotal - beforeTotal} this run (${Math.round(p.waitedMs / 1000)} s)`) } }
    })
    if (!drain.settled) say(`the gateway did not drain within ${c.drainTimeoutS} s: auditing anyway`)
    const audit = await runAudit(sim.records(), { ingestUrl, concurrency: 16 })
    report.audit = audit
    let commandsOk = true
    if (driver) {
      const ca = auditCommands(driver.sent, await fetchCommandViews(ingestUrl, driver.sent.map((x) => x.id), { token: commandSecret }), sim.commandRecords())
      report.commandAudit = { ...ca, driver: driver.counts, summary: driver.summary() }
      commandsOk = ca.ok
      say(formatCommandAudit(ca))
    }
    await writeReport(join(dataDir, 'last-report.json'), report)
    say(`generated ${report.totals.generated}, published ${report.totals.publishes}, acknowledged ${audit.totals.acknowledged}, stored upstream ${audit.totals.stored}, lost ${audit.totals.lost}, duplicated ${audit.totals.duplicated}`)
    say(formatAudit(audit))
    say(`report   ${join(dataDir, 'last-report.json')}`)
    return audit.ok && commandsOk ? 0 : 1
  } finally {
    await sim?.stop()
    for (const p of procs.reverse()) await stopChild(p)
    await mosquitto?.stop()
    await pgServer?.stop()
  }
}

main().then((code) => process.exit(code), (err: unknown) => {
  say(`npm start: ${(err as Error).message}`)
  process.exit(2)
})
