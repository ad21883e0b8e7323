/**
 * Backlog drain benchmark: fill the gateway's buffer with N readings while its
 * upstream is down, then start the ingest and time the drain. The gateway's RSS is sampled
 * through both phases: it must stay flat however large the backlog on disk is.
 *
 *   node --import tsx bench/drain.ts [--items 1000000] [--durability power|process]
 *
 * Processes: gateway (CLI, pinned to core 1), load generator (bench/loadgen.ts, core 0,
 * during the fill), ingest (CLI, core 0, during the drain). Appends one record to
 * bench/results/drain.jsonl.
 *
 * `--upstreams http,mqtt` drains the same backlog over each upstream in one run.
 * mqtt: the gateway's upstream is a Mosquitto (scripts/throwaway-mosquitto.ts) that is down
 * during the fill; the ingest (`--mqtt-broker`) is started first and the clock starts when
 * the broker accepts connections, so the drain includes both sides' reconnect (every 250 ms
 * here, as the HTTP upstream's --retry-max-ms 250). The mqtt record names the http one as its
 * baseline. `steadyPerSec` counts from the first answered batch (without the reconnect).
 *
 * `--live-devices N --live-rate R`: N more devices (bench/lib/live-devices.ts, its own
 * process, with the ingest on core 0) publish R readings/s in total through the gateway
 * while the backlog drains, and the record has their PUBACK p50/p99/p999/max over the drain
 * (`live`). Their readings join the backlog, so the drain counts as done once the buffer is
 * down to `drainDoneItems` (R, at least batch size x batches in flight) instead of 0;
 * `msgsPerSec` is still the backlog's fall over the drain time, `uploadedPerSec` all the
 * ingest stored in it (backlog and live readings).
 */
import { performance } from 'node:perf_hooks'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { bool, helpText, num, parseFlags, str, type FlagSpec } from './lib/args.ts'
import { mkdirSync } from 'node:fs'
import { canPin, Cleanup, freePort, pinned, rssKb, type Proc } from './lib/procs.ts'
import { ThrowawayMosquitto } from '../scripts/throwaway-mosquitto.ts'
import { appendRecord, fmtInt, fmtMs, gitSha, hostInfo } from './lib/results.ts'
import { commandLine, compiledBuild, launcherOptions, ROOT } from './lib/systems.ts'

const FLAGS: FlagSpec = {
  items: { type: 'number', default: 1_000_000, doc: 'readings to buffer before the upstream comes up' },
  durability: { type: 'string', default: 'power', doc: 'gateway --durability' },
  'batch-max-items': { type: 'number', default: 500, doc: 'gateway --batch-max-items' },
  'max-in-flight': { type: 'number', default: 4, doc: 'gateway --max-in-flight' },
  connections: { type: 'number', default: 100, doc: 'load generator connections during the fill' },
  pin: { type: 'bool', default: true, doc: 'taskset the gateway to core 1, the others to core 0' },
  write: { type: 'bool', default: true, doc: 'append the record to bench/results/drain.jsonl' },
  echo: { type: 'bool', default: false, doc: 'echo child output' },
  'timeout-s': { type: 'number', default: 600, doc: 'give up after this long' },
  upstreams: { type: 'string', default: 'http', doc: 'upstreams to drain over in this run, comma list of http and mqtt (a throwaway Mosquitto)' },
  'upstream-ack': { type: 'string', default: 'results', doc: 'gateway --upstream-ack for the mqtt upstream: results or broker' },
  'cpu-prof-dir': { type: 'string', default: '', doc: 'write V8 CPU profiles of the gateway and the ingest to this directory (node --cpu-prof; read them with bench/lib/profile-top.ts)' },
  compiled: { type: 'bool', default: false, doc: 'run the gateway and the ingest as tsc-compiled JavaScript without the tsx loader (as deployed)' },
  'mqtt-connections': { type: 'number', default: 4, doc: 'ingest --mqtt-connections for the mqtt upstream (each takes one batch at a time)' },
  'live-devices': { type: 'number', default: 0, doc: 'devices that keep publishing through the gateway during the drain (0 = none); their PUBACK latency is reported' },
  'live-rate': { type: 'number', default: 2000, doc: 'readings/s in total of the --live-devices' },
  'gateway-args': { type: 'string', default: '', doc: 'more gateway flags, space separated (e.g. "--commit-interval-ms 5")' },
  'as-installed': { type: 'bool', default: false, doc: 'run the gateway with the V8 options and MALLOC_ARENA_MAX of bin/gateway (bin/node-options), as the systemd unit does: its RSS is the one MemoryMax meets' },
  'gateway-rev': { type: 'string', default: '', doc: 'with --compiled: build gateway and ingest from this git revision instead of the working tree (a baseline run back to back with the change)' }
}

type LiveDone = { sent: number, acked: number, unacked: number, skipped: number, disconnects: number, count: number, p50Ms: number, p99Ms: number, p999Ms: number, maxMs: number, windowS: number, cpuUs: number }

type Status = { buffered: { items: number, bytes: number } }

let profileDir = ''
/** `--compiled`: the tsc build the gateway and the ingest run from (else they run under tsx) */
let build: string | null = null
/** `--gateway-rev`: the revision that build is of (the working tree when undefined) */
let gatewayRev: string | undefined
/** `--cpu-prof-dir`: the gateway and the ingest write V8 CPU profiles there (one per process, at exit) */
const node = (script: string, args: string[], nodeArgs: string[] = []): string[] => {
  const prof = [...(profileDir && !script.startsWith('bench/') ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), ...nodeArgs]
  if (build && !script.startsWith('bench/')) return [process.execPath, ...prof, join(build, script.replace(/\.ts$/, '.js')), ...args]
  return [process.execPath, ...prof, '--import', 'tsx', script, ...args]
}

async function status (adminPort: number): Promise<Status> {
  const r = await fetch(`http://127.0.0.1:${adminPort}/status`)
  return await r.json() as Status
}

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(`usage: node --import tsx bench/drain.ts [flags]\n${helpText(FLAGS)}\n`); return }
  const upstreams = str(f, 'upstreams')!.split(',').filter(Boolean)
  profileDir = str(f, 'cpu-prof-dir') ?? ''
  const buildCleanup = new Cleanup()
  gatewayRev = str(f, 'gateway-rev') || undefined
  if (gatewayRev && !bool(f, 'compiled')) throw new Error('--gateway-rev needs --compiled')
  if (bool(f, 'compiled')) build = await compiledBuild(buildCleanup, gatewayRev)
  for (const u of upstreams) if (u !== 'http' && u !== 'mqtt') throw new Error(`--upstreams: ${u} is not http or mqtt`)
  const runId = new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + '-' + process.pid
  const rates = new Map<string, number>()
  for (const upstream of upstreams) {
    // the previous drain's writes are flushed to disk first: its writeback would otherwise
    // compete with this drain's fsyncs (the second of two drains ran up to 30% slower)
    spawnSync('sync')
    rates.set(upstream, await drainOnce(f, upstream as 'http' | 'mqtt', runId, upstreams.includes('http')))
  }
  const h = rates.get('http')
  const m = rates.get('mqtt')
  if (h !== undefined && m !== undefined) process.stderr.write(`\nmqtt/http drain rate: x${(m / h).toFixed(2)} (${fmtInt(m)}/s vs ${fmtInt(h)}/s)\n`)
  buildCleanup.killAll()
}

async function drainOnce (f: ReturnType<typeof parseFlags>, upstream: 'http' | 'mqtt', runId: string, withBaseline: boolean): Promise<number> {
  const target = num(f, 'items')
  const upstreamAck = str(f, 'upstream-ack')!
  const pin = bool(f, 'pin') && canPin()
  const gwCore = pin ? 1 : null
  const otherCore = pin ? 0 : null
  const cleanup = new Cleanup()
  const dir = cleanup.tempDir('bench-drain-')
  const ingestPort = await freePort()
  const brokerPort = upstream === 'mqtt' ? await freePort() : 0
  const brokerUrl = `mqtt://127.0.0.1:${brokerPort}`
  const token = 'bench-secret-pad'
  const deadline = Date.now() + num(f, 'timeout-s') * 1000
  const echo = bool(f, 'echo')
  const installed = bool(f, 'as-installed') ? launcherOptions() : null
  const gwArgv = pinned(gwCore, node('gateway/main.ts', [
    '--gateway-id', 'bench', '--data-dir', join(dir, 'gateway'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0',
    ...(upstream === 'mqtt' ? ['--upstream', brokerUrl, '--upstream-ack', upstreamAck, '--upstream-reconnect-ms', '250'] : ['--upstream', `http://127.0.0.1:${ingestPort}`, '--token', token]), '--durability', str(f, 'durability')!,
    '--batch-max-items', String(num(f, 'batch-max-items')), '--max-in-flight', String(num(f, 'max-in-flight')),
    '--retry-base-ms', '50', '--retry-max-ms', '250', '--max-buffer-items', String(Math.max(target * 4, 200_000)), '--no-receipts',
    ...str(f, 'gateway-args')!.split(' ').filter(Boolean)
  ], installed?.nodeArgs))
  const gw = cleanup.spawn('gateway', gwArgv, { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'error', ...installed?.env }, echo })
  const ready = await gw.waitFor((o) => o.msg === 'ready', 30_000, 'gateway ready')
  const mqttPort = ready.mqttPort as number
  const adminPort = ready.adminPort as number

  const rss: { t: number, mb: number, phase: 'fill' | 'drain' }[] = []
  let phase: 'fill' | 'drain' = 'fill'
  const t0 = performance.now()
  const sampler = setInterval(() => {
    const kb = rssKb(gw.pid)
    if (kb !== null) rss.push({ t: performance.now() - t0, mb: kb / 1024, phase })
  }, 250)

  // fill: closed-loop load until the buffer holds `target` readings
  const fillStart = performance.now()
  let round = 0
  for (;;) {
    const have = (await status(adminPort)).buffered.items
    if (have >= target) break
    if (Date.now() > deadline) throw new Error(`fill timed out at ${have} items`)
    const lg: Proc = cleanup.spawn('loadgen', pinned(otherCore, node('bench/loadgen.ts', [
      '--port', String(mqttPort), '--connections', String(num(f, 'connections')), '--inflight', '32',
      '--duration-s', String(Math.max(2, Math.min(20, Math.ceil((target - have) / 60_000)))), '--warmup-s', '0', '--id-prefix', `fill${round++}-`
    ])), { cwd: ROOT, echo })
    await lg.exited
    process.stderr.write(`fill: ${fmtInt((await status(adminPort)).buffered.items)} buffered\n`)
  }
  const filled = (await status(adminPort)).buffered
  const fillS = (performance.now() - fillStart) / 1000

  // drain: the ingest (http) or the broker (mqtt) comes up on the port the gateway has been failing against
  phase = 'drain'
  const mqttIngestArgs = upstream === 'mqtt' ? ['--mqtt-broker', brokerUrl, '--mqtt-client-id', `bench-drain-${process.pid}`, '--mqtt-connections', String(num(f, 'mqtt-connections')), '--mqtt-reconnect-ms', '250'] : []
  const ingestArgv = pinned(otherCore, node('ingest/main.ts', ['--port', String(ingestPort), '--data-dir', join(dir, 'ingest'), '--token', `bench:${token}`, ...mqttIngestArgs]))
  // live devices: connected and publishing before the upstream comes up; their window starts with the drain (SIGUSR1)
  const liveN = num(f, 'live-devices')
  const liveRate = num(f, 'live-rate')
  const live = liveN > 0
    ? cleanup.spawn('live-devices', pinned(otherCore, node('bench/lib/live-devices.ts', ['--port', String(mqttPort), '--connections', String(liveN), '--rate', String(liveRate), '--id-prefix', `live${process.pid}-`])), { cwd: ROOT, echo })
    : null
  if (live) await live.waitFor((o) => o.msg === 'ready', 60_000, 'live devices ready')
  const doneAt = live ? Math.max(liveRate, num(f, 'batch-max-items') * num(f, 'max-in-flight')) : 0
  const ingest = cleanup.spawn('ingest', ingestArgv, { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'error' }, echo })
  await ingest.waitFor((o) => o.msg === 'ready', 30_000, 'ingest ready')
  let mosquitto: ThrowawayMosquitto | undefined
  if (upstream === 'mqtt') {
    const mdir = join(dir, 'mosquitto')
    mkdirSync(mdir, { recursive: true })
    mosquitto = await ThrowawayMosquitto.start({ dir: mdir, port: brokerPort })
    const mq = mosquitto
    cleanup.atExit(() => { mq.proc.kill('SIGKILL') })
  }
  const drainStart = performance.now()
  live?.child.kill('SIGUSR1')
  // with live devices the buffer holds what they sent since the fill
  const startItems = live ? (await status(adminPort)).buffered.items : filled.items
  let last = startItems
  let lastPrint = drainStart
  // the first answered batch: from here on the drain rate is the upstream's, not the reconnect's
  let firstProgress = 0
  let remaining = 0
  for (;;) {
    const s = await status(adminPort)
    if (firstProgress === 0 && s.buffered.items < startItems) firstProgress = performance.now()
    if (s.buffered.items <= doneAt) { remaining = s.buffered.items; break }
    if (Date.now() > deadline) throw new Error(`drain timed out with ${s.buffered.items} items left`)
    if (performance.now() - lastPrint > 2000) {
      process.stderr.write(`drain: ${fmtInt(s.buffered.items)} left, ${fmtInt((last - s.buffered.items) / ((performance.now() - lastPrint) / 1000))}/s, gateway RSS ${(rssKb(gw.pid)! / 1024).toFixed(0)} MB\n`)
      last = s.buffered.items
      lastPrint = performance.now()
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  const drainEnd = performance.now()
  const drainS = (drainEnd - drainStart) / 1000
  const steadyS = (drainEnd - (firstProgress || drainStart)) / 1000
  clearInterval(sampler)
  const storedAtEnd = (await (await fetch(`http://127.0.0.1:${ingestPort}/v1/stats`)).json() as { stored: number }).stored
  let liveDone: LiveDone | null = null
  if (live) {
    const got = live.waitFor((o) => o.msg === 'done', 10_000, 'live devices result')
    live.child.kill('SIGTERM')
    liveDone = await got as unknown as LiveDone
    // the live readings still buffered go up before the ingest's count is compared
    for (let waited = 0; (await status(adminPort)).buffered.items > 0 && waited < 60_000; waited += 100) await new Promise((r) => setTimeout(r, 100))
  }
  const rtt = await batchRoundTrip(adminPort)
  const stats = await (await fetch(`http://127.0.0.1:${ingestPort}/v1/stats`)).json() as { stored: number, duplicates: number }
  const ingestRssMb = (rssKb(ingest.pid) ?? 0) / 1024
  await gw.stop()
  await ingest.stop()
  await mosquitto?.stop()
  cleanup.killAll()

  const fillRss = rss.filter((r) => r.phase === 'fill').map((r) => r.mb)
  const drainRss = rss.filter((r) => r.phase === 'drain').map((r) => r.mb)
  const q = (a: number[], p: number): number => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? 0 }
  const rec = {
    scenario: 'drain',
    kind: 'result' as const,
    runId,
    ts: new Date().toISOString(),
    gitSha: gitSha(),
    node: process.version,
    host: hostInfo(pin ? 'gateway core 1; loadgen and ingest core 0' : 'not pinned'),
    system: `${build ? 'gateway-js' : 'gateway'}${upstream === 'http' ? '' : `/mqtt-${upstreamAck}`}`,
    ...(upstream === 'mqtt' && withBaseline ? { baseline: build ? 'gateway-js' : 'gateway' } : {}),
    ...(gatewayRev ? { gatewayRev } : {}),
    params: { ...(bool(f, 'as-installed') ? { asInstalled: true } : {}), ...(str(f, 'gateway-args') ? { gatewayArgs: str(f, 'gateway-args') } : {}), items: filled.items, durability: str(f, 'durability')!, batchMaxItems: num(f, 'batch-max-items'), maxInFlight: num(f, 'max-in-flight'), ...(upstream === 'mqtt' ? { mqttConnections: num(f, 'mqtt-connections') } : {}), ...(liveN > 0 ? { liveDevices: liveN, liveRate } : {}) },
    msgsPerSec: Math.round((startItems - remaining) / drainS),
    /** from the first answered batch to the end: without the time both sides take to (re)connect */
    steadyPerSec: Math.round((startItems - remaining) / steadyS),
    connectS: Number((((firstProgress || drainStart) - drainStart) / 1000).toFixed(2)),
    batchRoundTripMs: rtt,
    fillPerSec: Math.round(filled.items / fillS),
    drainS: Number(drainS.toFixed(2)),
    bufferedBytes: filled.bytes,
    ingestStored: stats.stored,
    ingestDuplicates: stats.duplicates,
    peakRssMb: Number(Math.max(...fillRss, ...drainRss).toFixed(1)),
    fillRssMedianMb: Number(q(fillRss, 0.5).toFixed(1)),
    drainRssMedianMb: Number(q(drainRss, 0.5).toFixed(1)),
    drainRssFirstMb: Number((drainRss[0] ?? 0).toFixed(1)),
    drainRssLastMb: Number((drainRss[drainRss.length - 1] ?? 0).toFixed(1)),
    drainRssMaxMb: Number(Math.max(...drainRss).toFixed(1)),
    ingestRssMb: Number(ingestRssMb.toFixed(1)),
    ...(liveDone
      ? {
          /** everything the ingest stored during the drain: backlog and live readings */
          uploadedPerSec: Math.round(storedAtEnd / drainS),
          drainDoneItems: doneAt,
          live: { devices: liveN, rate: liveRate, ...liveDone },
          p50Ms: liveDone.p50Ms,
          p99Ms: liveDone.p99Ms,
          p999Ms: liveDone.p999Ms
        }
      : {}),
    command: commandLine(['node', '--import', 'tsx', 'bench/drain.ts', ...process.argv.slice(2)])
  }
  process.stdout.write(JSON.stringify(rec) + '\n')
  process.stderr.write(`\n${upstream}: drained ${fmtInt(filled.items)} readings in ${drainS.toFixed(1)} s = ${fmtInt(rec.msgsPerSec)}/s (target >= 50,000: ${rec.msgsPerSec >= 50_000 ? 'PASS' : 'MISS'})\n` +
    `from the first answered batch: ${fmtInt(rec.steadyPerSec)}/s (connecting took ${rec.connectS} s); mean batch round trip ${rtt} ms\n` +
    `fill ${fmtInt(rec.fillPerSec)}/s; gateway RSS fill median ${rec.fillRssMedianMb} MB, drain first/median/max/last ${rec.drainRssFirstMb}/${rec.drainRssMedianMb}/${rec.drainRssMaxMb}/${rec.drainRssLastMb} MB\n` +
    `ingest stored ${fmtInt(stats.stored)} (duplicates ${fmtInt(stats.duplicates)})\n` +
    (liveDone ? `live devices during the drain (${liveN} at ${fmtInt(liveRate)}/s, ${fmtInt(liveDone.acked)} of ${fmtInt(liveDone.sent)} acked, ${liveDone.skipped} skipped, ${liveDone.disconnects} disconnects): PUBACK p50 ${fmtMs(liveDone.p50Ms)} / p99 ${fmtMs(liveDone.p99Ms)} / max ${fmtMs(liveDone.maxMs)} ms (goal p99 <= 50 ms: ${liveDone.p99Ms <= 50 ? 'PASS' : 'MISS'}); uploaded ${fmtInt(storedAtEnd / drainS)}/s in all while draining\n` : ''))
  const expected = filled.items + (liveDone?.acked ?? 0)
  if (stats.stored < expected) process.stderr.write(`WARNING: ingest stored ${stats.stored}, the gateway had ${filled.items}${liveDone ? ` + ${liveDone.acked} live readings acked` : ''}\n`)
  if (bool(f, 'write')) appendRecord('drain.jsonl', rec)
  return rec.msgsPerSec
}

/** Mean time from a batch's send to its answer, from the gateway's gateway_upstream_request_seconds (200s). */
async function batchRoundTrip (adminPort: number): Promise<number | null> {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()
  const sum = /^gateway_upstream_request_seconds_sum\{status="200"\} (\S+)$/m.exec(text)
  const count = /^gateway_upstream_request_seconds_count\{status="200"\} (\S+)$/m.exec(text)
  if (!sum || !count || Number(count[1]) === 0) return null
  return Number((Number(sum[1]) / Number(count[1]) * 1000).toFixed(1))
}

main().catch((err: Error) => { process.stderr.write(`drain bench failed: ${err.stack ?? err.message}\n`); process.exit(1) })
