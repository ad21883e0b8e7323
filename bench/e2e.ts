/**
 * End-to-end sustained rate: devices -> gateway -> ingest on one machine. For each
 * offered rate, the load generator publishes open loop for the window; the rate counts as
 * sustained when PUBACKs and the ingest's stored count keep up with it (>= 98%) and the
 * gateway's backlog does not grow by more than 2% of what was offered.
 *
 *   node --import tsx bench/e2e.ts [--rates 10000,20000,30000,40000] [--connections 1000] [--duration-s 15]
 *
 * Gateway flags are its defaults (batching included) plus --no-receipts and --gateway-args.
 * Processes: gateway and ingest CLIs (under tsx, or with --compiled as tsc output like a
 * deployment), bench/loadgen.ts; not pinned (three processes on two cores: the sum is what
 * one box does). Each record has the CPU each process used over the window, in % of a core
 * and in microseconds per reading: `cpuUsPerMsgByProc` per acknowledged reading (as before),
 * `cpuUsPerStoredByProc` per uploaded (stored) reading and `cpuPctByProc` (user + system from
 * /proc/PID/stat over the measured wall time). "loadgen" is the device simulator here:
 * bench/loadgen.ts, a child process; "bench" is this orchestrator itself (in-process,
 * `process.cpuUsage()`: it only polls /status, /v1/stats and /metrics). The load average at
 * the end of the window is in `loadAvg`. Appends one record per rate to
 * bench/results/e2e.jsonl, then one `checks` record per upstream: the highest sustained rate
 * against 30,000/s, and whether the uploaded rate falls as the offered rate rises past it
 * (bench/lib/e2e-checks.ts). The closing table lists offered vs acknowledged vs uploaded,
 * PUBACK p99 and the CPU split per rate.
 *
 * `--upstreams http,mqtt` runs the same rates over each upstream in one run: http
 * (gateway -> ingest) and mqtt (gateway -> a throwaway Mosquitto -> `ingest --mqtt-broker`,
 * `--upstream-ack` results by default). Each record has the uplink bytes per reading (the
 * gateway's `gateway_upstream_bytes_sent_total` over the window: request bodies, or PUBLISH
 * payloads; no HTTP headers or MQTT framing); the mqtt records name the http one of the same
 * run and rate as their baseline, and the end of the run prints the ratios.
 */
import { readFileSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { loadavg } from 'node:os'
import { spawnSync } from 'node:child_process'
import { performance } from 'node:perf_hooks'
import { join } from 'node:path'
import { bool, helpText, num, parseFlags, str, type FlagSpec } from './lib/args.ts'
import { Cleanup, cpuSeconds, RssSampler, type Proc } from './lib/procs.ts'
import { ThrowawayMosquitto } from '../scripts/throwaway-mosquitto.ts'
import { appendRecord, fmtInt, fmtMs, gitSha, hostInfo, table } from './lib/results.ts'
import { cpuShare, fromCpuUsage, parseProcStat, type CpuShare, type CpuTimes } from './lib/cpu-split.ts'
import { e2eChecks, type Step } from './lib/e2e-checks.ts'
import type { Check } from './lib/types.ts'
import { commandLine, compiledBuild, ROOT } from './lib/systems.ts'
import type { LoadResult } from './lib/types.ts'

const FLAGS: FlagSpec = {
  rates: { type: 'string', default: '10000,20000,30000,40000', doc: 'offered readings/s, comma list' },
  connections: { type: 'number', default: 1000, doc: 'devices (MQTT connections)' },
  'duration-s': { type: 'number', default: 15, doc: 'measured window per rate' },
  durability: { type: 'string', default: 'power', doc: 'gateway --durability' },
  'gateway-args': { type: 'string', default: '', doc: 'extra gateway flags, space-separated (e.g. "--max-in-flight 8")' },
  'gateway-node-args': { type: 'string', default: '', doc: 'extra node flags for the gateway, space-separated (e.g. "--cpu-prof --cpu-prof-dir /tmp/prof")' },
  compiled: { type: 'bool', default: false, doc: 'run gateway and ingest as tsc-compiled JavaScript without the tsx loader (as deployed)' },
  'gateway-rev': { type: 'string', default: '', doc: 'with --compiled: build gateway and ingest from this git revision instead of the working tree (a baseline run back to back with the change)' },
  write: { type: 'bool', default: true, doc: 'append to bench/results/e2e.jsonl' },
  upstreams: { type: 'string', default: 'http', doc: 'upstreams to measure in this run, comma list of http and mqtt (through a throwaway Mosquitto)' },
  'upstream-ack': { type: 'string', default: 'results', doc: 'gateway --upstream-ack for the mqtt upstream: results or broker' },
  echo: { type: 'bool', default: false, doc: 'echo child output' }
}

const node = (script: string, args: string[], nodeArgs: string[] = []): string[] => [process.execPath, ...nodeArgs, '--import', 'tsx', script, ...args]
const nodeJs = (script: string, args: string[], nodeArgs: string[] = []): string[] => [process.execPath, ...nodeArgs, script, ...args]
type Status = { buffered: { items: number } }
type Stats = { stored: number, duplicates: number }

const clkTck = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100
/** user and system CPU of a child process (/proc/PID/stat), null if it is gone */
function procTimes (pid: number): CpuTimes | null {
  try { return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'latin1'), clkTck) } catch { return null }
}
const PROCS = ['gateway', 'ingest', 'loadgen', 'bench'] as const
type ProcName = typeof PROCS[number]
const r1 = (n: number | null | undefined): number | null => n === null || n === undefined ? null : Math.round(n * 10) / 10

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(helpText(FLAGS) + '\n'); return }
  const cleanup = new Cleanup()
  const echo = bool(f, 'echo')
  const dir = cleanup.tempDir('bench-e2e-')
  const token = 'bench-secret-pad'
  const quiet = { ...process.env, LOG_LEVEL: 'error' }
  const compiled = bool(f, 'compiled')
  const rev = str(f, 'gateway-rev') || undefined
  if (rev && !compiled) throw new Error('--gateway-rev needs --compiled')
  const build = compiled ? await compiledBuild(cleanup, rev) : null
  const entry = (name: string, args: string[], nodeArgs: string[] = []): string[] => build ? nodeJs(join(build, name, 'main.js'), args, nodeArgs) : node(`${name}/main.ts`, args, nodeArgs)
  const upstreams = str(f, 'upstreams')!.split(',').filter(Boolean)
  for (const u of upstreams) if (u !== 'http' && u !== 'mqtt') throw new Error(`--upstreams: ${u} is not http or mqtt`)
  const upstreamAck = str(f, 'upstream-ack')!
  const durationS = num(f, 'duration-s')
  const runId = new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + '-' + process.pid
  const rows: string[] = []
  const tableRows: string[][] = []
  const checks: Check[] = []
  /** upstream -> rate -> [stored/s, uplink bytes/reading] */
  const seen = new Map<string, Map<number, [number, number]>>()
  let prefix = 0
  const baseSystem = compiled ? 'gateway+ingest-js' : 'gateway+ingest'
  for (const upstream of upstreams) {
    const sys = join(dir, upstream)
    let mosquitto: ThrowawayMosquitto | undefined
    const mqttIngestArgs: string[] = []
    if (upstream === 'mqtt') {
      const mdir = join(sys, 'mosquitto')
      await mkdir(mdir, { recursive: true })
      mosquitto = await ThrowawayMosquitto.start({ dir: mdir })
      const m = mosquitto
      cleanup.atExit(() => { m.proc.kill('SIGKILL') })
      mqttIngestArgs.push('--mqtt-broker', m.url, '--mqtt-client-id', `bench-ingest-${process.pid}`)
    }
    const ingest: Proc = cleanup.spawn('ingest', entry('ingest', ['--port', '0', '--data-dir', join(sys, 'ingest'), '--token', `bench:${token}`, ...mqttIngestArgs]), { cwd: ROOT, env: quiet, echo })
    const ingestPort = (await ingest.waitFor((o) => o.msg === 'ready', 30_000, 'ingest ready')).port as number
    const upstreamArgs = mosquitto ? ['--upstream', mosquitto.url, '--upstream-ack', upstreamAck] : ['--upstream', `http://127.0.0.1:${ingestPort}`, '--token', token]
    const gw: Proc = cleanup.spawn('gateway', entry('gateway', ['--gateway-id', 'bench', '--data-dir', join(sys, 'gateway'), '--host', '127.0.0.1',
      '--mqtt-port', '0', '--admin-port', '0', ...upstreamArgs, '--durability', str(f, 'durability')!,
      '--no-receipts', ...str(f, 'gateway-args')!.split(' ').filter(Boolean)], str(f, 'gateway-node-args')!.split(' ').filter(Boolean)), { cwd: ROOT, env: quiet, echo })
    const ready = await gw.waitFor((o) => o.msg === 'ready', 30_000, 'gateway ready')
    const status = async (): Promise<Status> => {
      try {
        return await (await fetch(`http://127.0.0.1:${String(ready.adminPort)}/status`)).json() as Status
      } catch (err) {
        // say why: a gateway that exited, or one too starved to answer
        throw new Error(`gateway /status: ${(err as Error).message} (${(err as Error & { cause?: Error }).cause?.message ?? 'no cause'}); gateway ${gw.exit ? `exited ${JSON.stringify(gw.exit)}` : 'still running'}; ${gw.describeTail()}`)
      }
    }
    const stats = async (): Promise<Stats> => await (await fetch(`http://127.0.0.1:${ingestPort}/v1/stats`)).json() as Stats
    const sentBytes = async (): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${String(ready.adminPort)}/metrics`)).text()
      const m = /^gateway_upstream_bytes_sent_total (\S+)$/m.exec(text)
      return m ? Number(m[1]) : NaN
    }
    if (mosquitto) {
    // the consumer subscribes in the background: wait for it before offering load
      const deadline = Date.now() + 30_000
      while ((await fetch(`http://127.0.0.1:${ingestPort}/readyz`)).status !== 200) {
        if (Date.now() > deadline) throw new Error('the ingest did not subscribe to the broker within 30 s')
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    const system = upstream === 'http' ? baseSystem : `${baseSystem}/mqtt-${upstreamAck}`
    const steps: Step[] = []
    for (const rate of str(f, 'rates')!.split(',').map(Number)) {
      const rss = new RssSampler(gw.pid)
      const lg = cleanup.spawn('loadgen', node('bench/loadgen.ts', ['--port', String(ready.mqttPort), '--connections', String(num(f, 'connections')),
        '--rate', String(rate), '--duration-s', String(durationS), '--warmup-s', '3', '--id-prefix', `e2e${prefix++}-`]), { cwd: ROOT, echo })
    // window boundaries come from the load generator's phase lines
    type Snap = { buffered: number, stored: number, cpu: number[], sent: number, times: Record<ProcName, CpuTimes | null>, at: number, overload: unknown }
    let atStart: Snap | null = null
    let atEnd: Snap | null = null
    const cpu = (): number[] => [gw.pid, ingest.pid, lg.pid].map((pid) => cpuSeconds(pid) ?? NaN)
    const snap = async (): Promise<Snap> => {
      const c = cpu()
      const times = { gateway: procTimes(gw.pid), ingest: procTimes(ingest.pid), loadgen: procTimes(lg.pid), bench: fromCpuUsage(process.cpuUsage()) }
      const at = performance.now()
      const st = await status()
      return { buffered: st.buffered.items, stored: (await stats()).stored, cpu: c, sent: await sentBytes(), times, at, overload: (st as { overload?: unknown }).overload ?? null }
    }
    const phases: Promise<void>[] = []
    lg.onLine((_l, o) => {
      if (o?.type === 'phase' && o.phase === 'measure') phases.push(snap().then((s) => { atStart = s }))
      if (o?.type === 'phase' && o.phase === 'drain') phases.push(snap().then((s) => { atEnd = s }))
    })
    const result = await lg.waitFor((o) => o.type === 'result', (durationS + 120) * 1000, 'loadgen result') as unknown as LoadResult
    await Promise.all(phases)
    const peakRssMb = rss.stop() / 1024
    if (!atStart || !atEnd) throw new Error('loadgen printed no measure/drain phase lines')
    const s0 = atStart as Snap
    const s1 = atEnd as Snap
    // CPU seconds each process used in the window, and per reading offered (µs)
    const [gwCpu, ingestCpu, loadgenCpu] = s1.cpu.map((c, i) => c - s0.cpu[i]!) as [number, number, number]
    const perMsg = (sec: number): number => Number((sec * 1e6 / Math.max(1, result.msgsPerSec * durationS)).toFixed(1))
    const storedPerSec = (s1.stored - s0.stored) / durationS
    const backlogGrowth = s1.buffered - s0.buffered
    const stored = s1.stored - s0.stored
    const uplinkBytesPerReading = stored > 0 ? Number(((s1.sent - s0.sent) / stored).toFixed(1)) : null
    const sustained = result.msgsPerSec >= 0.98 * rate && storedPerSec >= 0.98 * rate && backlogGrowth <= 0.02 * rate * durationS
    // the split per process over the measured wall time, per uploaded reading
    const wallS = (s1.at - s0.at) / 1000
    const share = {} as Record<ProcName, CpuShare | null>
    for (const p of PROCS) share[p] = cpuShare(s0.times[p], s1.times[p], wallS, stored)
    const load = loadavg().map((x) => Number(x.toFixed(2)))
    const rec = {
      scenario: 'e2e', kind: 'result' as const, runId, ts: new Date().toISOString(), gitSha: gitSha(), node: process.version, host: hostInfo('not pinned'),
      system, ...(rev ? { gatewayRev: rev } : {}), ...(upstream === 'mqtt' && upstreams.includes('http') ? { baseline: baseSystem } : {}), params: { rate, connections: num(f, 'connections'), durability: str(f, 'durability')!, gatewayArgs: str(f, 'gateway-args')! },
      msgsPerSec: Math.round(result.msgsPerSec), storedPerSec: Math.round(storedPerSec), backlogGrowth, bytesPerReading: uplinkBytesPerReading,
      p50Ms: result.latency.p50Ms, p99Ms: result.latency.p99Ms, p999Ms: result.latency.p999Ms, peakRssMb: Number(peakRssMb.toFixed(1)),
      cpuPct: { gateway: Math.round(gwCpu * 100 / durationS), ingest: Math.round(ingestCpu * 100 / durationS), loadgen: Math.round(loadgenCpu * 100 / durationS) },
      cpuUsPerMsgByProc: { gateway: perMsg(gwCpu), ingest: perMsg(ingestCpu), loadgen: perMsg(loadgenCpu) },
      offeredPerSec: rate,
      cpuUsPerStoredByProc: Object.fromEntries(PROCS.map((p) => [p, share[p]?.usPerReading ?? null])),
      cpuPctByProc: Object.fromEntries(PROCS.map((p) => [p, r1(share[p]?.pct)])),
      cpuWindowS: Number(wallS.toFixed(2)),
      cpuInProcess: 'bench (the orchestrator); loadgen (the device simulator) is a child process',
      loadAvg: load,
      overloadAtEnd: s1.overload,
      errors: result.errors.skipped + result.errors.disconnects + result.errors.unacked, sustained,
      command: commandLine(['node', '--import', 'tsx', 'bench/e2e.ts', ...process.argv.slice(2)])
    }
    process.stdout.write(JSON.stringify(rec) + '\n')
    if (!seen.has(upstream)) seen.set(upstream, new Map())
    seen.get(upstream)!.set(rate, [storedPerSec, uplinkBytesPerReading ?? NaN])
    rows.push(`${upstream.padEnd(4)} ${fmtInt(rate).padStart(7)}/s offered: ${fmtInt(result.msgsPerSec).padStart(7)} acked/s, ${fmtInt(storedPerSec).padStart(7)} stored/s upstream, backlog ${backlogGrowth >= 0 ? '+' : ''}${fmtInt(backlogGrowth)}, uplink ${uplinkBytesPerReading ?? '?'} B/reading, PUBACK p50 ${result.latency.p50Ms} p99 ${result.latency.p99Ms} ms, gateway RSS ${peakRssMb.toFixed(0)} MB, CPU % gateway/ingest/loadgen ${rec.cpuPct.gateway}/${rec.cpuPct.ingest}/${rec.cpuPct.loadgen}: ${sustained ? 'sustained' : 'NOT sustained'}`)
    process.stderr.write(rows[rows.length - 1] + '\n')
    steps.push({ offered: rate, acked: result.msgsPerSec, uploaded: storedPerSec, p99Ms: result.latency.p99Ms, sustained })
    const us = (p: ProcName): string => share[p]?.usPerReading === null || share[p] === null ? '-' : share[p].usPerReading.toFixed(1)
    const pct = (p: ProcName): string => share[p] === null ? '-' : share[p].pct.toFixed(0)
    tableRows.push([upstream, fmtInt(rate), fmtInt(result.msgsPerSec), fmtInt(storedPerSec), `${backlogGrowth >= 0 ? '+' : ''}${fmtInt(backlogGrowth)}`, fmtMs(result.latency.p99Ms),
      PROCS.map(pct).join('/'), PROCS.map(us).join('/'), load[0]!.toFixed(1), sustained ? 'yes' : 'no'])
    if (bool(f, 'write')) appendRecord('e2e.jsonl', rec)
    // let the backlog of this step drain before the next
    const drainUntil = Date.now() + 60_000
    while ((await status()).buffered.items > 0 && Date.now() < drainUntil) await new Promise((r) => setTimeout(r, 200))
    }
    await gw.stop()
    await ingest.stop()
    await mosquitto?.stop()
    const cs = e2eChecks(steps, system)
    checks.push(...cs)
    if (bool(f, 'write')) {
      appendRecord('e2e.jsonl', {
        scenario: 'e2e', kind: 'checks', runId, ts: new Date().toISOString(), gitSha: gitSha(), node: process.version, host: hostInfo('not pinned'),
        system, params: {}, checks: cs, command: commandLine(['node', '--import', 'tsx', 'bench/e2e.ts', ...process.argv.slice(2)])
      })
    }
  }
  cleanup.killAll()
  const http = seen.get('http')
  const mqtt = seen.get('mqtt')
  if (http && mqtt) {
    for (const [rate, [mStored, mBytes]] of mqtt) {
      const h = http.get(rate)
      if (!h) continue
      rows.push(`mqtt/http at ${fmtInt(rate)}/s offered: stored/s x${(mStored / h[0]).toFixed(2)}, uplink bytes/reading x${(mBytes / h[1]).toFixed(2)} (${mBytes} vs ${h[1]})`)
    }
  }
  process.stderr.write('\n' + rows.join('\n') + '\n')
  process.stderr.write('\n' + table(['upstream', 'offered/s', 'acked/s', 'uploaded/s', 'backlog', 'PUBACK p99 ms', 'CPU % gateway/ingest/loadgen/bench', 'CPU us/uploaded gateway/ingest/loadgen/bench', 'load avg', 'sustained'], tableRows, false) + '\n')
  process.stderr.write('(loadgen = the device simulator, bench/loadgen.ts, a child process; bench = this orchestrator, in-process)\n\n')
  for (const c of checks) process.stderr.write(`${c.pass === null ? 'N/A ' : c.pass ? 'PASS' : 'MISS'}  ${c.name}: ${c.value} (target ${c.target})\n`)
}

main().catch((err: Error) => { process.stderr.write(`e2e bench failed: ${err.stack ?? err.message}\n`); process.exit(1) })
