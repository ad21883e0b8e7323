/**
 * Commands to devices (docs/commands.md): what a command costs end to end, caller -> ingest
 * -> gateway -> device -> back, with `--devices` (1,000) simulated devices connected.
 *
 *   node --import tsx bench/commands.ts [--devices 1000] [--sync-rate 100] [--async-rates 200,500,1000] [--duration-s 20] [--compiled]
 *
 * Steps, one run, side by side:
 * 1. baseline: a bare request/response through Mosquitto (bench/lib/mqtt-reqres.ts): one
 *    requester publishes to `devices/{id}/commands`, `--devices` responders answer on
 *    `devices/{id}/commands/answers`, at `--sync-rate`; round trip p50/p99;
 * 2. sync: the device simulator's driver (device-sim/command-driver.ts, in the device-sim
 *    CLI, its own process) sends `POST /v1/devices/{id}/commands?wait=MS` at `--sync-rate`
 *    to random connected devices; round trip p50/p99 (POST to the 200), and the ratio to
 *    the baseline;
 * 3. async: for each of `--async-rates`, asynchronous commands (POST, 202) at that rate for
 *    the window, reconciled through the feed `GET /v1/commands` at the end; sustained when
 *    the ingest created >= 98% of the rate, every command reached one final state within
 *    `--final-timeout-s` and the command audit passed (each result is the device's answer,
 *    no id executed twice). The driver keeps at most 256 requests in flight (a caller's
 *    connection pool), so the rate reached is bounded by 256 / (POST -> 202 latency): the
 *    record has that latency (p50Ms/p99Ms of the async step).
 * Each device-sim run audits its commands (exit 1 otherwise): every number here comes from a
 * run whose every command was audited.
 *
 * Processes: ingest and gateway CLIs (tsx, or --compiled as tsc output), device-sim CLI,
 * Mosquitto for the baseline; not pinned. Appends one record per step to
 * bench/results/commands.jsonl.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ThrowawayMosquitto } from '../scripts/throwaway-mosquitto.ts'
import { bool, helpText, num, parseFlags, str, type FlagSpec } from './lib/args.ts'
import { reqResRoundTrip } from './lib/mqtt-reqres.ts'
import { Cleanup, cpuSeconds, type Proc } from './lib/procs.ts'
import { appendRecord, gitSha, hostInfo } from './lib/results.ts'
import { commandLine, compiledBuild, ROOT } from './lib/systems.ts'

const FLAGS: FlagSpec = {
  devices: { type: 'number', default: 1000, doc: 'simulated devices connected to the gateway (and responders of the baseline)' },
  'sync-rate': { type: 'number', default: 100, doc: 'synchronous commands/s (and the baseline\'s requests/s)' },
  'async-rates': { type: 'string', default: '200,500,1000', doc: 'asynchronous commands/s to try, comma list' },
  'duration-s': { type: 'number', default: 20, doc: 'window of each step' },
  'readings-rate': { type: 'number', default: 0.1, doc: 'readings per second per simulated device meanwhile' },
  'wait-ms': { type: 'number', default: 10_000, doc: '?wait=MS of the synchronous commands' },
  'final-timeout-s': { type: 'number', default: 120, doc: 'max wait after each step for every command to be final' },
  baseline: { type: 'bool', default: true, doc: 'run the Mosquitto request/response baseline' },
  compiled: { type: 'bool', default: false, doc: 'run gateway and ingest as tsc-compiled JavaScript without the tsx loader (as deployed)' },
  write: { type: 'bool', default: true, doc: 'append to bench/results/commands.jsonl' },
  echo: { type: 'bool', default: false, doc: 'echo child output' }
}

const node = (script: string, args: string[]): string[] => [process.execPath, '--import', 'tsx', script, ...args]

type SimReport = {
  totals: { connects: number, commandsReceived: number, commandsExecuted: number }
  commandAudit?: {
    ok: boolean
    counts: { created: number, completed: number, rejected: number, expired: number, cancelled: number } & Record<string, number>
    driver: Record<string, number | string | null>
    summary: { sendingS: number, createdPerS: number, roundTripMs: { count: number, p50Ms: number | null, p99Ms: number | null, maxMs: number | null }, toFinalMs: { p50Ms: number | null, p99Ms: number | null }, asyncPostMs: { p50Ms: number | null, p99Ms: number | null } }
  }
}

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(helpText(FLAGS) + '\n'); return }
  const cleanup = new Cleanup()
  const echo = bool(f, 'echo')
  const dir = cleanup.tempDir('bench-commands-')
  const devices = num(f, 'devices')
  const syncRate = num(f, 'sync-rate')
  const durationS = num(f, 'duration-s')
  const runId = new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + '-' + process.pid
  const base = { scenario: 'commands', kind: 'result' as const, runId, gitSha: gitSha(), node: process.version, host: hostInfo('not pinned'), command: commandLine(['node', '--import', 'tsx', 'bench/commands.ts', ...process.argv.slice(2)]) }
  const rows: string[] = []
  const out = (rec: Record<string, unknown>): void => {
    const r = { ...base, ts: new Date().toISOString(), ...rec }
    process.stdout.write(JSON.stringify(r) + '\n')
    if (bool(f, 'write')) appendRecord('commands.jsonl', r as never)
  }

  // 1. baseline: bare request/response through Mosquitto
  let baseline: { p50Ms: number | null, p99Ms: number | null } | null = null
  if (bool(f, 'baseline')) {
    const mdir = join(dir, 'mosquitto')
    mkdirSync(mdir, { recursive: true })
    const m = await ThrowawayMosquitto.start({ dir: mdir, extra: ['max_queued_messages 100000'] })
    cleanup.atExit(() => { m.proc.kill('SIGKILL') })
    const cpu0 = cpuSeconds(m.proc.pid!) ?? NaN
    const r = await reqResRoundTrip({ url: m.url, responders: devices, rate: syncRate, durationS })
    const cpu = (cpuSeconds(m.proc.pid!) ?? NaN) - cpu0
    await m.stop()
    baseline = { p50Ms: r.p50Ms, p99Ms: r.p99Ms }
    out({ system: 'mosquitto-reqres', params: { step: 'sync', rate: syncRate, devices }, msgsPerSec: r.sentPerS, p50Ms: r.p50Ms, p99Ms: r.p99Ms, maxMs: r.maxMs, sent: r.sent, answered: r.answered, cpuPct: { broker: Math.round(cpu * 100 / durationS) } })
    rows.push(`mosquitto request/response  ${syncRate}/s x ${devices} responders: answered ${r.answered}/${r.sent}, round trip p50 ${r.p50Ms} ms p99 ${r.p99Ms} ms`)
    process.stderr.write(rows.at(-1) + '\n')
  }

  // 2. the system: ingest + gateway
  const compiled = bool(f, 'compiled')
  const build = compiled ? await compiledBuild(cleanup) : null
  const entry = (name: string, args: string[]): string[] => build ? [process.execPath, join(build, name, 'main.js'), ...args] : node(`${name}/main.ts`, args)
  const quiet = { ...process.env, LOG_LEVEL: 'error' }
  const token = randomBytes(18).toString('base64url')
  const commandSecret = randomBytes(18).toString('base64url')
  const ingest: Proc = cleanup.spawn('ingest', entry('ingest', ['--port', '0', '--data-dir', join(dir, 'ingest'), '--token', `bench:${token}`,
    '--command-token', `default:${commandSecret}`, '--command-rate', '1000000', '--command-max-pending-per-device', '100000']), { cwd: ROOT, env: quiet, echo })
  const ingestPort = (await ingest.waitFor((o) => o.msg === 'ready', 60_000, 'ingest ready')).port as number
  const ingestUrl = `http://127.0.0.1:${ingestPort}`
  const gw: Proc = cleanup.spawn('gateway', entry('gateway', ['--gateway-id', 'bench', '--data-dir', join(dir, 'gateway'), '--host', '127.0.0.1',
    '--mqtt-port', '0', '--admin-port', '0', '--upstream', ingestUrl, '--token', token, '--no-receipts']), { cwd: ROOT, env: quiet, echo })
  const ready = await gw.waitFor((o) => o.msg === 'ready', 60_000, 'gateway ready')
  const system = compiled ? 'gateway+ingest-js' : 'gateway+ingest'

  let step = 0
  const simRun = async (kind: 'sync' | 'deferred', rate: number): Promise<{ report: SimReport, code: number | null, cpu: Record<string, number> }> => {
    const report = join(dir, `sim-${step}.json`)
    const sim = cleanup.spawn('device-sim', node('device-sim/main.ts', ['--broker', `mqtt://127.0.0.1:${String(ready.mqttPort)}`, '--devices', String(devices),
      '--rate', String(num(f, 'readings-rate')), '--duration', String(durationS), '--id-prefix', `cb${step++}-`, '--no-receipts', '--progress', 'off',
      '--commands-rate', String(rate), '--commands-kinds', kind, '--commands-ingest', ingestUrl, '--command-token', commandSecret,
      '--commands-wait-ms', String(num(f, 'wait-ms')), '--commands-final-timeout-s', String(num(f, 'final-timeout-s')), '--report', report]), { cwd: ROOT, env: process.env, echo }) // its info lines time the window
    const pids = { gateway: gw.pid, ingest: ingest.pid, sim: sim.pid }
    const c0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p) ?? NaN]))
    let c1: Record<string, number> = {}
    // the CPU of the window: sampled when the sim logs its report (before the audits)
    sim.onLine((_l, o) => { if (o?.msg === 'report') c1 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p) ?? NaN])) })
    const exit = await sim.exited
    const cpu = Object.fromEntries(Object.keys(pids).map((k) => [k, Math.round(((c1[k] ?? NaN) - c0[k]!) * 100 / durationS)]))
    let rep: SimReport
    try { rep = JSON.parse(readFileSync(report, 'utf8')) as SimReport } catch (err) { throw new Error(`device-sim wrote no report (exit ${exit.code}): ${sim.describeTail()}`, { cause: err }) }
    return { report: rep, code: exit.code, cpu }
  }

  // 2a. synchronous round trip
  {
    const { report, code, cpu } = await simRun('sync', syncRate)
    const ca = report.commandAudit
    if (!ca) throw new Error('device-sim ran no command audit')
    const rt = ca.summary.roundTripMs
    const ratio = (a: number | null, b: number | null | undefined): number | null => a !== null && b ? Math.round(a / b * 100) / 100 : null
    out({
      system, ...(baseline ? { baseline: 'mosquitto-reqres' } : {}), params: { step: 'sync', rate: syncRate, devices, waitMs: num(f, 'wait-ms') },
      msgsPerSec: ca.summary.createdPerS, p50Ms: rt.p50Ms, p99Ms: rt.p99Ms, maxMs: rt.maxMs, answeredInWait: rt.count, created: ca.counts.created,
      ratioP50: ratio(rt.p50Ms, baseline?.p50Ms), ratioP99: ratio(rt.p99Ms, baseline?.p99Ms), auditOk: ca.ok && code === 0, audit: ca.counts, driver: ca.driver, cpuPct: cpu
    })
    rows.push(`${system} sync ${syncRate}/s x ${devices} devices: created ${ca.counts.created} (${ca.summary.createdPerS}/s), answered in the wait ${rt.count}, round trip p50 ${rt.p50Ms} ms p99 ${rt.p99Ms} ms` +
      (baseline ? ` = x${ratio(rt.p50Ms, baseline.p50Ms)} / x${ratio(rt.p99Ms, baseline.p99Ms)} Mosquitto's` : '') + `, audit ${ca.ok && code === 0 ? 'PASS' : 'FAIL'}`)
    process.stderr.write(rows.at(-1) + '\n')
  }

  // 2b. sustained asynchronous
  for (const rate of str(f, 'async-rates')!.split(',').filter(Boolean).map(Number)) {
    const { report, code, cpu } = await simRun('deferred', rate)
    const ca = report.commandAudit
    if (!ca) throw new Error('device-sim ran no command audit')
    const final = ca.counts.completed + ca.counts.rejected + ca.counts.expired + ca.counts.cancelled
    const sustained = ca.summary.createdPerS >= 0.98 * rate && final === ca.counts.created && ca.ok && code === 0
    out({
      system, params: { step: 'async', rate, devices }, msgsPerSec: ca.summary.createdPerS, created: ca.counts.created, final, expired: ca.counts.expired,
      p50Ms: ca.summary.asyncPostMs.p50Ms, p99Ms: ca.summary.asyncPostMs.p99Ms,
      auditOk: ca.ok && code === 0, sustained, audit: ca.counts, driver: ca.driver, cpuPct: cpu
    })
    rows.push(`${system} async ${rate}/s x ${devices} devices: created ${ca.summary.createdPerS}/s, POST -> 202 p50 ${ca.summary.asyncPostMs.p50Ms} ms p99 ${ca.summary.asyncPostMs.p99Ms} ms (at most 256 in flight), final ${final}/${ca.counts.created} (expired ${ca.counts.expired}), audit ${ca.ok && code === 0 ? 'PASS' : 'FAIL'}, CPU % gateway/ingest/sim ${cpu.gateway}/${cpu.ingest}/${cpu.sim}: ${sustained ? 'sustained' : 'NOT sustained'}`)
    process.stderr.write(rows.at(-1) + '\n')
  }
  await gw.stop()
  await ingest.stop()
  cleanup.killAll()
  process.stderr.write('\n' + rows.join('\n') + '\n')
}

main().catch((err: Error) => { process.stderr.write(`commands bench failed: ${err.stack ?? err.message}\n`); process.exit(1) })
