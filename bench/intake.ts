/**
 * Intake benchmark: how many QoS 1 readings per second the gateway acknowledges (PUBACK =
 * on disk), at what latency, in how much memory — side by side with Mosquitto (baseline)
 * and bare Aedes (the broker without durability), under the same load in the same run.
 *
 *   node --import tsx bench/intake.ts [--duration-s 10] [--systems gateway,mosquitto,aedes] [--only 100x32]
 *
 * Per matrix row and system: start the system (its own process, pinned to the broker core),
 * run bench/loadgen.ts (its own process, pinned to the load core), sample the system's
 * VmRSS every 200 ms and its CPU time over the measured window, stop it. The instant-ack
 * `sink` runs first in every row: its rate is the load generator's ceiling, so each result
 * says whether the system or the generator was the limit. Results are appended to
 * bench/results/intake.jsonl (one record per row and system, plus one `checks` record);
 * `node --import tsx bench/update-results.ts` renders bench/RESULTS.md from them.
 */
import { performance } from 'node:perf_hooks'
import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { bool, helpText, num, parseFlags, str, type FlagSpec } from './lib/args.ts'
import { canPin, Cleanup, coreBusySeconds, cpuSeconds, hwmKb, pinned, RssSampler, rssKb, threadCpuSeconds } from './lib/procs.ts'
import { appendRecord, fmtInt, fmtMs, fmtRatio, gitSha, hostInfo, table } from './lib/results.ts'
import { commandLine, resolveSystems, ROOT, type System } from './lib/systems.ts'
import type { BenchRecord, Check, LoadResult } from './lib/types.ts'

const FLAGS: FlagSpec = {
  'duration-s': { type: 'number', default: 10, doc: 'measured window per run' },
  'warmup-s': { type: 'number', default: 2, doc: 'load before the window, not recorded' },
  'drain-timeout-s': { type: 'number', default: 5, doc: 'wait for outstanding PUBACKs after the window' },
  systems: { type: 'string', default: 'mosquitto,aedes,gateway', doc: 'comma list of sink, mosquitto, aedes, gateway (= gateway-power,gateway-process), gateway-js (the same compiled by tsc, no tsx), or single names (gateway-power, gateway-process-js...); the sink runs first unless --no-sink' },
  sink: { type: 'bool', default: true, doc: 'measure the load generator ceiling (instant-ack sink) in every row' },
  only: { type: 'string', default: '100x32,1000x8,paced', doc: 'matrix rows: CONNECTIONSxINFLIGHT (closed loop) and/or paced' },
  rate: { type: 'number', default: 5000, doc: 'paced row: readings/s in total' },
  'paced-devices': { type: 'number', default: 1000, doc: 'paced row: connections' },
  pin: { type: 'bool', default: true, doc: 'taskset: system under test on --broker-core, load generator on --loadgen-core' },
  'broker-core': { type: 'number', default: 1, doc: 'CPU core of the system under test' },
  'loadgen-core': { type: 'number', default: 0, doc: 'CPU core of the load generator' },
  write: { type: 'bool', default: true, doc: 'append records to bench/results/intake.jsonl' },
  'cpu-prof-dir': { type: 'string', doc: 'run the gateway with node --cpu-prof, profiles written here' },
  'gateway-node-args': { type: 'string', doc: 'extra node flags for the gateway, space-separated (e.g. "--max-semi-space-size=4"); the gateway systems are then named gateway-power[FLAGS]' },
  repeat: { type: 'number', default: 1, doc: 'runs per row and system, interleaved; the median (msgs/s closed loop, p99 paced) is reported' },
  echo: { type: 'bool', default: false, doc: 'echo child stdout/stderr to stderr' }
}

const IDLE_SETTLE_MS = 3000

type Row = { id: string, mode: 'closed' | 'open', connections: number, inflight: number | null, rate: number | null }

function parseRows (list: string, rate: number, devices: number): Row[] {
  return list.split(',').map((s) => s.trim()).filter(Boolean).map((id): Row => {
    const m = /^(\d+)x(\d+)$/.exec(id)
    if (m) return { id, mode: 'closed', connections: Number(m[1]), inflight: Number(m[2]), rate: null }
    if (id === 'paced') return { id: `paced-${rate}/s-${devices}`, mode: 'open', connections: devices, inflight: null, rate }
    throw new Error(`--only: unknown row ${id} (use CONNECTIONSxINFLIGHT, e.g. 100x32, or paced)`)
  })
}

type Metrics = {
  msgsPerSec: number
  p50Ms: number
  p99Ms: number
  p999Ms: number
  peakRssMb?: number
  errors: number
  brokerCpuPct: number | null
  threadCpuPct: Record<string, number> | null
  otherCpuPct: number | null
  [extra: string]: unknown
}
type Outcome = { row: Row, system: string, metrics?: Metrics, rec?: BenchRecord, load?: LoadResult, failed?: string }

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) {
    process.stdout.write(`usage: node --import tsx bench/intake.ts [flags]\n${helpText(FLAGS)}\n`)
    return
  }
  const durationS = num(f, 'duration-s')
  const warmupS = num(f, 'warmup-s')
  const drainS = num(f, 'drain-timeout-s')
  if (durationS <= 0 || durationS > 600 || warmupS < 0 || warmupS > 120) throw new Error('--duration-s must be in (0, 600], --warmup-s in [0, 120]')
  const rows = parseRows(str(f, 'only')!, num(f, 'rate'), num(f, 'paced-devices'))
  const requested = resolveSystems(str(f, 'systems')!)
  const systems = bool(f, 'sink') && !requested.some((s) => s.name === 'sink') ? [...resolveSystems('sink'), ...requested] : requested
  const pin = bool(f, 'pin') && canPin()
  const brokerCore = pin ? num(f, 'broker-core') : null
  const loadCore = pin ? num(f, 'loadgen-core') : null
  const pinNote = pin ? `system under test on core ${brokerCore}, load generator on core ${loadCore} (taskset)` : 'not pinned'
  const profDir = str(f, 'cpu-prof-dir')
  if (profDir) mkdirSync(resolve(profDir), { recursive: true })
  const extraNodeArgs = (str(f, 'gateway-node-args') ?? '').split(' ').filter(Boolean)
  const gatewayNodeArgs = [...extraNodeArgs, ...(profDir ? ['--cpu-prof', '--cpu-prof-dir', resolve(profDir)] : [])]
  const sysName = (s: System): string => s.name.startsWith('gateway') && extraNodeArgs.length ? `${s.name}[${extraNodeArgs.join(' ')}]` : s.name

  const cleanup = new Cleanup()
  const runId = new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + '-' + process.pid
  const command = commandLine(['node', '--import', 'tsx', 'bench/intake.ts', ...process.argv.slice(2)])
  const base = { scenario: 'intake', kind: 'result' as const, runId, gitSha: gitSha(), node: process.version, host: hostInfo(pinNote), command }
  const available = systems.filter((s) => {
    const why = s.unavailable()
    if (why) process.stderr.write(`skipping ${s.name}: ${why}\n`)
    return !why
  })
  const versions = Object.fromEntries(available.map((s) => [s.name, s.version()]))
  process.stderr.write(`intake bench ${runId}: rows ${rows.map((r) => r.id).join(', ')}; systems ${available.map((s) => s.name).join(', ')}; ${durationS} s + ${warmupS} s warm-up; ${pinNote}\n`)

  const outcomes: Outcome[] = []
  const repeat = Math.max(1, Math.floor(num(f, 'repeat')))
  const ctx: RunCtx = { cleanup, brokerCore, loadCore, durationS, warmupS, drainS, echo: bool(f, 'echo'), gatewayNodeArgs }
  for (const row of rows) {
    const reps = new Map<string, Outcome[]>(available.map((s) => [sysName(s), []]))
    for (let k = 0; k < repeat; k++) {
      // The sink first; the others rotate each repetition so none always runs on a warmer or quieter host.
      const sink = available.filter((s) => s.name === 'sink')
      const rest = available.filter((s) => s.name !== 'sink')
      const order = [...sink, ...rest.slice(k % Math.max(1, rest.length)), ...rest.slice(0, k % Math.max(1, rest.length))]
      for (const sys of order) {
        const o = { ...await runOne(sys, row, ctx), system: sysName(sys) }
        reps.get(sysName(sys))!.push(o)
        const tag = `  ${row.id.padEnd(20)} ${sysName(sys).padEnd(16)}${repeat > 1 ? ` #${k + 1}` : ''}`
        if (o.failed) { process.stderr.write(`${tag} FAILED ${o.failed}\n`); continue }
        const l = o.load!
        const m = o.metrics!
        process.stderr.write(`${tag} ${fmtInt(l.msgsPerSec).padStart(9)} msgs/s  p50 ${fmtMs(l.latency.p50Ms)}  p99 ${fmtMs(l.latency.p99Ms)}  p999 ${fmtMs(l.latency.p999Ms)} ms  rss idle ${String(m.idleRssMb)} peak ${String(m.peakRssMb)} MB  cpu ${String(m.brokerCpuPct)}%/${l.loadgenCpuPct}%/other ${String(m.otherCpuPct)}%  errors ${String(m.errors)}\n`)
        if (m.threadCpuPct) process.stderr.write(`${' '.repeat(40)}CPU % by thread: ${Object.entries(m.threadCpuPct).sort((a, b) => b[1] - a[1]).map(([n, v]) => `${n} ${v}`).join(', ')}\n`)
        if (row.mode === 'open') process.stderr.write(`${' '.repeat(40)}p99 ms per second: ${l.timeline.map((x) => fmtMs(x.p99Ms)).join(' ')}\n`)
      }
    }
    for (const sys of available) {
      const o = combine(reps.get(sysName(sys))!, row)
      outcomes.push(o)
      if (o.failed) continue
      const rec: BenchRecord = {
        ...base,
        ts: new Date().toISOString(),
        system: sysName(sys),
        systemVersion: versions[sys.name],
        ...(sys.name !== 'mosquitto' ? { baseline: 'mosquitto' } : {}),
        params: { row: row.id, mode: row.mode, connections: row.connections, inflight: row.inflight, rate: row.rate, durationS, warmupS },
        ...o.metrics
      }
      o.rec = rec
      if (bool(f, 'write')) appendRecord('intake.jsonl', rec)
    }
  }

  const checks = evaluate(outcomes, rows)
  printSummary(outcomes, rows, checks, pinNote)
  if (bool(f, 'write')) {
    appendRecord('intake.jsonl', { ...base, kind: 'checks', ts: new Date().toISOString(), system: '-', params: {}, checks })
    process.stdout.write('\nappended to bench/results/intake.jsonl; regenerate bench/RESULTS.md with: node --import tsx bench/update-results.ts\n')
  }
  if (profDir) process.stdout.write(`gateway CPU profiles in ${resolve(profDir)}\n`)
  cleanup.killAll()
}

type RunCtx = { cleanup: Cleanup, brokerCore: number | null, loadCore: number | null, durationS: number, warmupS: number, drainS: number, echo: boolean, gatewayNodeArgs: string[] }

async function runOne (sys: System, row: Row, c: RunCtx): Promise<Outcome> {
  let running
  try {
    running = await sys.start({ cleanup: c.cleanup, core: c.brokerCore, echo: c.echo, gatewayNodeArgs: sys.name.startsWith('gateway') ? c.gatewayNodeArgs : [] })
  } catch (err) {
    return { row, system: sys.name, failed: `start: ${(err as Error).message}` }
  }
  const pid = running.proc.pid
  // idle: started, no device connected yet (what a quiet Pi holds)
  await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS))
  const idleKb = rssKb(pid)
  const sampler = new RssSampler(pid, 200)
  const loadArgs = [
    '--port', String(running.port), '--connections', String(row.connections),
    ...(row.mode === 'closed' ? ['--inflight', String(row.inflight)] : ['--rate', String(row.rate)]),
    '--duration-s', String(c.durationS), '--warmup-s', String(c.warmupS), '--drain-timeout-s', String(c.drainS),
    '--id-prefix', `bench-${sys.name.replace(/[^A-Za-z0-9._-]/g, '_')}-`
  ]
  const loadArgv = pinned(c.loadCore, [process.execPath, '--import', 'tsx', 'bench/loadgen.ts', ...loadArgs])
  const lg = c.cleanup.spawn('loadgen', loadArgv, { cwd: ROOT, echo: c.echo })
  let cpuA: number | null = null
  let tA = 0
  let brokerCpuPct: number | null = null
  let busyA: number[] = []
  let lgCpuA: number | null = null
  let threadsA: Map<string, number> | null = null
  /** the system's CPU over the window by thread name, in % of a core (where the cost is: main thread, GC helpers, LevelDB, libuv) */
  let threadCpuPct: Record<string, number> | null = null
  // CPU time on the two bench cores spent by anything but the system and the generator
  // (other jobs on a shared machine): a run with much of it is noisy.
  let otherCpuPct: number | null = null
  lg.onLine((_l, o) => {
    if (o?.type !== 'phase') return
    if (o.phase === 'measure') { cpuA = cpuSeconds(pid); lgCpuA = cpuSeconds(lg.pid); busyA = coreBusySeconds(); threadsA = threadCpuSeconds(pid); tA = performance.now() }
    if (o.phase === 'drain' && cpuA !== null) {
      const secs = (performance.now() - tA) / 1000
      const cpuB = cpuSeconds(pid)
      const lgCpuB = cpuSeconds(lg.pid)
      const busyB = coreBusySeconds()
      if (cpuB !== null) brokerCpuPct = Math.round((cpuB - cpuA) / secs * 1000) / 10
      const threadsB = threadCpuSeconds(pid)
      if (threadsA && threadsB) {
        threadCpuPct = {}
        for (const [name, b] of threadsB) {
          const pct = Math.round((b - (threadsA.get(name) ?? 0)) / secs * 1000) / 10
          if (pct >= 0.5) threadCpuPct[name] = pct
        }
      }
      if (cpuB !== null && lgCpuB !== null && lgCpuA !== null && c.brokerCore !== null && c.loadCore !== null) {
        const busy = [c.brokerCore, c.loadCore].reduce((sum, core) => sum + ((busyB[core] ?? 0) - (busyA[core] ?? 0)), 0)
        otherCpuPct = Math.max(0, Math.round((busy - (cpuB - cpuA) - (lgCpuB - lgCpuA)) / secs * 1000) / 10)
      }
    }
  })
  const budgetMs = (60 + c.warmupS + c.durationS + c.drainS + 15) * 1000
  let load: LoadResult
  try {
    load = await lg.waitFor((o) => o.type === 'result', budgetMs, 'result line') as unknown as LoadResult
    await lg.stop('SIGTERM', 3000)
  } catch (err) {
    await lg.stop('SIGKILL', 0)
    sampler.stop()
    await running.stop()
    return { row, system: sys.name, failed: `loadgen: ${(err as Error).message}` }
  }
  const peakKb = sampler.stop()
  const hwm = hwmKb(pid)
  const died = running.proc.exit
  await running.stop()
  const e = load.errors
  const errors = e.connect + e.socket + e.disconnects + e.unacked + e.outOfOrderAcks + e.unexpectedAcks + e.skipped + (died ? 1 : 0)
  const mb = (kb: number | null): number | null => kb === null ? null : Math.round(kb / 1024 * 10) / 10
  const metrics: Metrics = {
    msgsPerSec: load.msgsPerSec,
    p50Ms: load.latency.p50Ms,
    p99Ms: load.latency.p99Ms,
    p999Ms: load.latency.p999Ms,
    maxMs: load.latency.maxMs,
    peakRssMb: mb(peakKb) ?? undefined,
    idleRssMb: mb(idleKb),
    hwmRssMb: mb(hwm),
    brokerCpuPct,
    threadCpuPct,
    loadgenCpuPct: load.loadgenCpuPct,
    otherCpuPct,
    // CPU time the system spent per acknowledged message: unlike msgs/s it barely moves when
    // other jobs share the core, so it compares efficiency on a noisy host.
    cpuUsPerMsg: brokerCpuPct !== null && load.msgsPerSec > 0 ? Math.round(brokerCpuPct * 1e4 / load.msgsPerSec * 10) / 10 : null,
    errors,
    errorDetail: { ...e, systemExitedEarly: died ? `${died.code ?? died.signal}` : null },
    errorSamples: load.errorSamples,
    sent: load.windowSent,
    acked: load.windowAcked,
    maxScheduleLagMs: load.maxScheduleLagMs,
    timeline: load.timeline,
    systemCommand: running.command,
    loadgenCommand: commandLine(loadArgv).replace(process.execPath, 'node')
  }
  return { row, system: sys.name, load, metrics }
}

/**
 * The median repetition (by msgs/s, or by p99 when paced; with an even count the worse of
 * the two middle ones), with the worst RSS and all errors.
 */
function combine (reps: Outcome[], row: Row): Outcome {
  const ok = reps.filter((o) => !o.failed)
  if (ok.length === 0) return reps[0]!
  const key = (o: Outcome): number => row.mode === 'open' ? -o.load!.latency.p99Ms : o.load!.msgsPerSec
  const sorted = [...ok].sort((a, b) => key(a) - key(b))
  const mid = sorted[Math.floor((sorted.length - 1) / 2)]!
  if (reps.length === 1) return mid
  const rss = ok.map((o) => o.metrics!.peakRssMb ?? 0)
  return {
    ...mid,
    metrics: {
      ...mid.metrics!,
      peakRssMb: Math.max(...rss),
      errors: ok.reduce((s, o) => s + (o.metrics!.errors ?? 0), 0) + (reps.length - ok.length),
      repeats: reps.map((o) => o.failed ? { failed: o.failed } : { msgsPerSec: o.load!.msgsPerSec, p99Ms: o.load!.latency.p99Ms, peakRssMb: o.metrics!.peakRssMb, otherCpuPct: o.metrics!.otherCpuPct })
    }
  }
}

const find = (outs: Outcome[], rowId: string, system: string): Outcome | undefined => outs.find((o) => o.row.id === rowId && o.system === system && o.rec)

function ratio (outs: Outcome[], rowId: string, system: string, against = 'mosquitto'): number | null {
  const a = find(outs, rowId, system)?.rec?.msgsPerSec
  const b = find(outs, rowId, against)?.rec?.msgsPerSec
  return a !== undefined && b ? a / b : null
}

/** The reference's CPU per message over this system's: the throughput ratio if each had a whole core. */
function cpuRatio (outs: Outcome[], rowId: string, system: string, against = 'mosquitto'): number | null {
  const a = find(outs, rowId, system)?.rec?.cpuUsPerMsg
  const b = find(outs, rowId, against)?.rec?.cpuUsPerMsg
  return typeof a === 'number' && typeof b === 'number' && a > 0 ? b / a : null
}

/** Who set the pace: the system's core, the generator's core, or neither (waiting on I/O). */
function bound (o: Outcome, outs: Outcome[]): string {
  if (!o.rec || !o.load) return '-'
  if (o.row.mode === 'open') return 'paced'
  const sink = find(outs, o.row.id, 'sink')?.rec?.msgsPerSec
  if (o.system !== 'sink' && sink && o.load.msgsPerSec >= 0.9 * sink) return 'loadgen'
  if (((o.rec.brokerCpuPct as number | null) ?? 0) >= 85) return 'system cpu'
  if (o.load.loadgenCpuPct >= 85) return 'loadgen'
  if (((o.rec.otherCpuPct as number | null) ?? 0) >= 25) return 'noisy host'
  return 'system wait'
}

function evaluate (outs: Outcome[], rows: Row[]): Check[] {
  const checks: Check[] = []
  // Every gateway variant that ran is judged; the reference is bare Aedes (the broker the
  // gateway is built on): Mosquitto's figure at 100x32 is the load generator's ceiling
  const gws = [...new Set(outs.map((o) => o.system).filter((x) => x.startsWith('gateway-power')))]
  for (const gw of gws) {
    const thr = (rowId: string, min: number): void => {
      if (!rows.some((r) => r.id === rowId)) return
      const r = ratio(outs, rowId, gw, 'aedes')
      const cr = cpuRatio(outs, rowId, gw, 'aedes')
      checks.push({ name: `${gw} ${rowId} throughput vs bare aedes`, target: `>= ${min.toFixed(1)}x`, value: `${fmtRatio(r)}${cr === null ? '' : ` (CPU per message: ${fmtRatio(cr)})`}`, pass: r === null ? null : r >= min })
    }
    thr('100x32', 0.7)
    const paced = rows.find((r) => r.mode === 'open')
    if (paced) {
      // at device-like pacing CPU per reading is what a Pi pays: at most 1.5x bare Aedes
      const cr = cpuRatio(outs, paced.id, gw, 'aedes')
      checks.push({ name: `${gw} CPU per reading at ${paced.rate}/s over ${paced.connections} devices vs bare aedes`, target: '<= 1.5x', value: cr === null ? 'n/a' : `${(1 / cr).toFixed(2)}x`, pass: cr === null ? null : 1 / cr <= 1.5 })
      const rec = find(outs, paced.id, gw)?.rec
      const p99 = rec?.p99Ms
      const clean = rec ? rec.errors === 0 : false
      checks.push({ name: `${gw} p99 PUBACK latency at ${paced.rate}/s over ${paced.connections} devices`, target: '<= 3 ms, no errors', value: p99 === undefined ? 'n/a' : `${fmtMs(p99)} ms${clean ? '' : `, ${rec!.errors} errors`}`, pass: p99 === undefined ? null : p99 <= 3 && clean })
    }
    const rss = outs.filter((o) => o.system === gw && o.rec?.peakRssMb !== undefined).map((o) => o.rec!.peakRssMb!)
    checks.push({ name: `${gw} peak RSS over all rows`, target: '<= 120 MB', value: rss.length ? `${Math.max(...rss)} MB` : 'n/a', pass: rss.length ? Math.max(...rss) <= 120 : null })
  }
  return checks
}

function printSummary (outs: Outcome[], rows: Row[], checks: Check[], pinNote: string): void {
  const head = ['row', 'system', 'msgs/s', 'x mosquitto', 'p50 ms', 'p99 ms', 'p999 ms', 'peak RSS MB', 'system CPU %', 'CPU us/msg', 'x mosquitto (CPU/msg)', 'loadgen CPU %', 'other CPU %', 'bound', 'errors']
  const body: string[][] = []
  for (const row of rows) {
    for (const o of outs.filter((x) => x.row.id === row.id)) {
      if (!o.rec || !o.load) { body.push([row.id, o.system, 'FAILED', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', (o.failed ?? '').slice(0, 60)]); continue }
      body.push([
        row.id, o.system, fmtInt(o.load.msgsPerSec), o.system === 'mosquitto' ? '1.00x' : fmtRatio(ratio(outs, row.id, o.system)),
        fmtMs(o.load.latency.p50Ms), fmtMs(o.load.latency.p99Ms), fmtMs(o.load.latency.p999Ms),
        String(o.rec.peakRssMb ?? '-'), String(o.rec.brokerCpuPct ?? '-'), String(o.rec.cpuUsPerMsg ?? '-'), fmtRatio(cpuRatio(outs, row.id, o.system)), String(o.load.loadgenCpuPct), String(o.rec.otherCpuPct ?? '-'), bound(o, outs), String(o.rec.errors ?? '-')
      ])
    }
  }
  process.stdout.write(`\nIntake benchmark (${pinNote})\n\n${table(head, body, false)}\n`)
  const other = outs.map((o) => o.rec?.otherCpuPct).filter((x): x is number => typeof x === 'number')
  const meanOther = other.length ? other.reduce((a, b) => a + b, 0) / other.length : 0
  if (meanOther >= 25) process.stdout.write(`\nWARNING: other processes took ${meanOther.toFixed(0)}% (mean) of the two bench cores during the windows: msgs/s and latency are disturbed; the CPU-per-message ratio is the steadier comparison.\n`)
  process.stdout.write('\nTargets\n')
  for (const c of checks) process.stdout.write(`  ${c.pass === null ? 'N/A ' : c.pass ? 'PASS' : 'MISS'}  ${c.name}: ${c.value} (target ${c.target})\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`intake bench failed: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1) // the Cleanup 'exit' hook kills the children and removes the temp dirs
})
