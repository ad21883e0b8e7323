/**
 * MQTT protocol fuzz bench: a seeded fuzzer (bench/lib/mqtt-hostile.ts: ~600
 * connections/s that publish retained messages on thousands of topics, subscribe to `#`
 * and hang up within 50 ms, random bytes, huge and malformed remaining lengths, QoS 2
 * floods, subscription floods, long topics, wills, persistent subscribers that never come
 * back, byte-flipped packets...) against the gateway with its default flags, and against
 * bare Aedes under the same load as the baseline. Throughout: the system's peak RSS
 * (VmRSS every 200 ms), whether it crashed, the gateway's /readyz every second, and a
 * well-behaved device (bench/lib/good-device.ts, its own process) publishing a QoS 1
 * reading every 20 ms and measuring its PUBACK latency.
 *
 *   node --import tsx bench/fuzz.ts [--duration-s 180] [--rate 600] [--systems gateway,aedes] [--seed N]
 *
 * The gateway runs as installed (bin/gateway): compiled, with bin/node-options and
 * MALLOC_ARENA_MAX=2, and no flags but its data dir, ports and upstream.
 *
 * Goal: gateway peak RSS < 150 MB, no crash, /readyz 200 throughout, good device
 * p99 < 100 ms. Bare Aedes runs with --max-old-space-size (`--aedes-heap-mb`) so that it
 * dies at V8's heap limit instead of taking the shared machine's memory. Records go to
 * bench/results/fuzz.jsonl; bench/update-results.ts renders them into bench/RESULTS.md.
 */
import { connect as netConnect, type Socket } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { mulberry32 } from '../common/random.ts'
import { bool, helpText, num, parseFlags, str, type FlagSpec } from './lib/args.ts'
import { FUZZ_KINDS, fuzzSession, type FuzzKind } from './lib/mqtt-hostile.ts'
import { Cleanup, RssSampler, type Proc } from './lib/procs.ts'
import { appendRecord, fmtMs, gitSha, hostInfo, table } from './lib/results.ts'
import { commandLine, compiledBuild, launcherOptions, ROOT } from './lib/systems.ts'
import type { BenchRecord, Check } from './lib/types.ts'

const FLAGS: FlagSpec = {
  'duration-s': { type: 'number', default: 180, doc: 'fuzzing time per system' },
  rate: { type: 'number', default: 600, doc: 'new fuzz connections per second' },
  'max-open': { type: 'number', default: 400, doc: 'fuzz connections open at once (beyond it a scheduled one is skipped and counted)' },
  seed: { type: 'number', default: 20261130, doc: 'PRNG seed: same seed, same traffic' },
  systems: { type: 'string', default: 'gateway,aedes', doc: 'comma list of gateway, aedes' },
  'aedes-heap-mb': { type: 'number', default: 1024, doc: 'bare Aedes: --max-old-space-size (it dies there instead of taking the machine)' },
  'gateway-node-args': { type: 'string', doc: 'extra node flags for the gateway, space-separated (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof")' },
  launcher: { type: 'bool', default: true, doc: 'run the gateway as bin/gateway does: its V8 options (bin/node-options) and MALLOC_ARENA_MAX (--no-launcher: node with no options)' },
  compiled: { type: 'bool', default: true, doc: 'run the gateway as a Pi does: tsc-compiled JavaScript, no tsx loader (--no-compiled: gateway/main.ts through tsx)' },
  'idle-s': { type: 'number', default: 10, doc: 'before fuzzing, the good device alone: its latency on this machine without the fuzzer (the noise floor of a shared box)' },
  write: { type: 'bool', default: true, doc: 'append records to bench/results/fuzz.jsonl' }
}

const f = parseFlags(process.argv.slice(2), FLAGS)
if (f.get('help')) { process.stdout.write(helpText(FLAGS)); process.exit(0) }
const durationS = num(f, 'duration-s')
const rate = num(f, 'rate')
const maxOpen = num(f, 'max-open')
const seed = num(f, 'seed')
const systems = (str(f, 'systems') ?? '').split(',').map((s) => s.trim()).filter(Boolean)
const cleanup = new Cleanup()
const runId = `${new Date().toISOString()}-${process.pid}`
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

type Target = { name: string, proc: Proc, port: number, admin: string | null, command: string, version: string, stop: () => Promise<void> }

function nodeArgv (entry: string, args: string[], nodeArgs: string[] = []): string[] {
  return [process.execPath, ...nodeArgs, '--import', 'tsx', entry, ...args]
}

async function startGateway (): Promise<Target> {
  const dir = cleanup.tempDir('bench-fuzz-')
  const ingest = cleanup.spawn('ingest', nodeArgv('ingest/main.ts', ['--port', '0', '--data-dir', join(dir, 'ingest'), '--token', 'gw1:fuzz-secret-pad-']), { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'warn' } })
  const ir = await ingest.waitFor((l) => l.msg === 'ready' && typeof l.port === 'number', 30_000, 'ingest ready')
  // default flags: only where its data goes, its ports, and its upstream (for /readyz)
  const args = ['--data-dir', join(dir, 'gateway'), '--mqtt-port', '0', '--admin-port', '0', '--upstream', `http://127.0.0.1:${String(ir.port)}`, '--token', 'fuzz-secret-pad-']
  const launcher = bool(f, 'launcher') ? launcherOptions() : { nodeArgs: [], env: {} }
  const nodeArgs = [...launcher.nodeArgs, ...(str(f, 'gateway-node-args') ?? '').split(' ').filter(Boolean)]
  const compiled = bool(f, 'compiled')
  const entry = compiled ? join(await compiledBuild(cleanup), 'gateway', 'main.js') : 'gateway/main.ts'
  const argv = compiled ? [process.execPath, ...nodeArgs, entry, ...args] : nodeArgv(entry, args, nodeArgs)
  const proc = cleanup.spawn('gateway', argv, { cwd: ROOT, env: { ...process.env, ...launcher.env, LOG_LEVEL: process.env.BENCH_GATEWAY_LOG_LEVEL ?? 'warn' } })
  const r = await proc.waitFor((l) => l.msg === 'ready' && typeof l.mqttPort === 'number', 30_000, 'gateway ready')
  return {
    name: 'gateway',
    proc,
    port: r.mqttPort as number,
    admin: `http://127.0.0.1:${String(r.adminPort)}`,
    command: Object.entries(launcher.env).map(([k, v]) => `${k}=${v} `).join('') + commandLine(argv).replace(process.execPath, 'node').replaceAll(dir, '$TMP').replace(entry, compiled ? '$BUILD/gateway/main.js' : entry) + (compiled ? '  # $BUILD = tsc -p tsconfig.build.json --outDir $BUILD' : ''),
    version: `gateway@${gitSha()}`,
    stop: async () => { await proc.stop('SIGTERM', 10_000); await ingest.stop('SIGTERM', 5000); cleanup.removeDir(dir) }
  }
}

async function startAedes (): Promise<Target> {
  const argv = nodeArgv('bench/lib/aedes-broker.ts', [], [`--max-old-space-size=${num(f, 'aedes-heap-mb')}`])
  const proc = cleanup.spawn('aedes', argv, { cwd: ROOT })
  const r = await proc.waitFor((l) => l.msg === 'ready' && typeof l.mqttPort === 'number', 30_000, 'aedes ready')
  return { name: 'aedes', proc, port: r.mqttPort as number, admin: null, command: commandLine(argv).replace(process.execPath, 'node'), version: 'bare aedes', stop: async () => { await proc.stop('SIGTERM', 5000) } }
}

type Outcome = {
  peakRssMb: number
  crashed: string | null
  readyzOk: number
  readyzTotal: number
  readyzNot200: number
  readyzTimeouts: number
  readyzReasons: Record<string, number>
  opened: number
  skipped: number
  byKind: Record<string, number>
  good: { sent: number, acked: number, unacked: number, disconnects: number, p50Ms: number, p99Ms: number, p999Ms: number, maxMs: number } | null
  worstTickP99Ms: number
  idleP99Ms: number
  timeline: Array<{ s: number, rssMb: number, goodP99Ms: number, open: number }>
  gauges: Record<string, number>
}

async function fuzz (target: Target): Promise<Outcome> {
  const rng = mulberry32(seed)
  const rss = new RssSampler(target.proc.pid, 200)
  const good = cleanup.spawn('good-device', nodeArgv('bench/lib/good-device.ts', ['--port', String(target.port)]), { cwd: ROOT })
  const ticks: Array<{ p99Ms: number }> = []
  let done: Outcome['good'] = null
  createInterface({ input: good.child.stdout! }).on('line', (line) => {
    try {
      const l = JSON.parse(line) as { msg?: string, p99Ms: number }
      if (l.msg === 'tick') ticks.push(l)
      if (l.msg === 'done') done = l as unknown as NonNullable<Outcome['good']>
    } catch { /* not JSON */ }
  })
  await good.waitFor((l) => l.msg === 'ready', 30_000, 'good device connected')
  await sleep(num(f, 'idle-s') * 1000)
  const idle = ticks.splice(0).map((x) => x.p99Ms).sort((a, b) => a - b)
  const idleP99Ms = idle[Math.floor(idle.length / 2)] ?? 0 // median of the per-second p99s
  const byKind: Record<string, number> = Object.fromEntries(FUZZ_KINDS.map((k) => [k, 0]))
  const open = new Set<Socket>()
  let opened = 0
  let skipped = 0
  let n = 0
  let readyzOk = 0
  let readyzTotal = 0
  let readyzNot200 = 0 // answered, not 200
  let readyzTimeouts = 0 // no answer within 2 s (the gateway's loop, or this process's, too busy)
  const readyzReasons: Record<string, number> = {} // body of each non-200 answer -> count
  let crashed: string | null = null
  const timeline: Outcome['timeline'] = []
  const t0 = Date.now()
  const end = t0 + durationS * 1000

  const launch = (): void => {
    if (open.size >= maxOpen) { skipped++; return }
    const s = fuzzSession(rng, n++)
    byKind[s.kind as FuzzKind]!++
    const sock = netConnect(target.port, '127.0.0.1')
    opened++
    open.add(sock)
    let got = false
    const timer = setTimeout(() => sock.destroy(), s.hangUpMs + 5)
    sock.on('connect', () => sock.write(s.bytes))
    sock.on('data', () => { if (!got && s.after) sock.write(s.after); got = true })
    sock.on('error', () => {})
    sock.on('close', () => { clearTimeout(timer); open.delete(sock) })
  }
  // paced at `rate` connections/s in 10 ms slots
  let due = 0
  const pacer = setInterval(() => {
    const elapsed = (Date.now() - t0) / 1000
    const target = Math.floor(elapsed * rate)
    while (due < target) { launch(); due++ }
  }, 10)
  const poll = setInterval(() => {
    if (target.proc.exit && !crashed) crashed = `exited ${String(target.proc.exit.code ?? target.proc.exit.signal)}: ${target.proc.describeTail()}`
    if (!target.admin || crashed) return
    readyzTotal++
    fetch(`${target.admin}/readyz`, { signal: AbortSignal.timeout(2000) }).then(async (r) => {
      const body = await r.text().catch(() => '')
      if (r.status === 200) { readyzOk++; return }
      readyzNot200++
      readyzReasons[body] = (readyzReasons[body] ?? 0) + 1
    }, () => { readyzTimeouts++ })
  }, 1000)
  let lastTick = 0
  const sampler = setInterval(() => {
    const w = ticks.slice(lastTick).map((x) => x.p99Ms)
    lastTick = ticks.length
    timeline.push({ s: Math.round((Date.now() - t0) / 1000), rssMb: Math.round(rss.peakKb / 1024), goodP99Ms: Math.max(0, ...w), open: open.size })
    process.stderr.write(`${target.name} ${timeline.at(-1)!.s}s: peak RSS ${timeline.at(-1)!.rssMb} MB, good p99 (last 10 s) ${fmtMs(timeline.at(-1)!.goodP99Ms)} ms, open ${open.size}, opened ${opened}${crashed ? ' CRASHED' : ''}\n`)
  }, 10_000)
  while (Date.now() < end && !crashed) await sleep(200)
  clearInterval(pacer)
  for (const s of open) s.destroy()
  await sleep(2000) // what is queued still runs; the good device keeps measuring
  // where the gateway's memory is at the end: its bounded stores and the V8 heap
  const gauges: Record<string, number> = {}
  if (target.admin && !crashed) {
    const text = await fetch(`${target.admin}/metrics`, { signal: AbortSignal.timeout(5000) }).then((r) => r.text(), () => '')
    for (const line of text.split('\n')) {
      const m = /^(gateway_mqtt_(?:retained_messages|retained_bytes|queued_messages|queued_bytes|sessions)|gateway_process_nodejs_heap_size_used_bytes|gateway_process_resident_memory_bytes) (\S+)$/.exec(line)
      if (m) gauges[m[1]!] = Number(m[2])
    }
  }
  if (Object.keys(gauges).length > 0) process.stderr.write(`${target.name} at the end: ${JSON.stringify(gauges)}\n`)
  clearInterval(poll)
  clearInterval(sampler)
  if (target.proc.exit && !crashed) crashed = `exited ${String(target.proc.exit.code ?? target.proc.exit.signal)}`
  const peak = rss.stop()
  await good.stop('SIGTERM', 3000)
  await sleep(100)
  return { peakRssMb: peak / 1024, crashed, readyzOk, readyzTotal, readyzNot200, readyzTimeouts, readyzReasons, opened, skipped, byKind, good: done, idleP99Ms, worstTickP99Ms: Math.max(0, ...ticks.map((x) => x.p99Ms)), timeline, gauges }
}

const results: Array<{ target: Target, o: Outcome }> = []
const base = { gitSha: gitSha(), node: process.version, host: hostInfo('not pinned') }
const params = { durationS, rate, maxOpen, seed }
for (const name of systems) {
  const target = name === 'gateway' ? await startGateway() : name === 'aedes' ? await startAedes() : null
  if (!target) throw new Error(`unknown system ${name} (gateway, aedes)`)
  process.stderr.write(`fuzzing ${name} for ${durationS} s at ${rate} connections/s (seed ${seed})\n`)
  const o = await fuzz(target)
  await target.stop()
  results.push({ target, o })
  const rec: BenchRecord = {
    scenario: 'fuzz',
    runId,
    ts: new Date().toISOString(),
    ...base,
    system: name,
    params,
    peakRssMb: Math.round(o.peakRssMb * 10) / 10,
    p50Ms: o.good?.p50Ms,
    p99Ms: o.good?.p99Ms,
    p999Ms: o.good?.p999Ms,
    errors: o.good ? o.good.sent - o.good.acked : undefined,
    crashed: o.crashed,
    readyzOk: target.admin ? o.readyzOk : null,
    readyzTotal: target.admin ? o.readyzTotal : null,
    readyzNot200: target.admin ? o.readyzNot200 : null,
    readyzTimeouts: target.admin ? o.readyzTimeouts : null,
    readyzReasons: target.admin ? o.readyzReasons : null,
    connsPerSec: Math.round(o.opened / durationS),
    opened: o.opened,
    skipped: o.skipped,
    goodMaxMs: o.good?.maxMs,
    goodDisconnects: o.good?.disconnects,
    worstSecondP99Ms: o.worstTickP99Ms,
    idleP99Ms: o.idleP99Ms,
    byKind: o.byKind,
    timeline: o.timeline,
    gaugesAtEnd: o.gauges,
    systemCommand: target.command,
    systemVersion: target.version,
    command: `node --import tsx bench/fuzz.ts ${process.argv.slice(2).join(' ')}`.trim()
  }
  if (bool(f, 'write')) appendRecord('fuzz.jsonl', rec)
}

const gw = results.find((r) => r.target.name === 'gateway')
if (gw) {
  const o = gw.o
  const checks: Check[] = [
    { name: 'gateway peak RSS under fuzzing', target: '< 150 MB', value: `${o.peakRssMb.toFixed(0)} MB`, pass: o.peakRssMb < 150 },
    { name: 'gateway never crashed', target: 'no exit', value: o.crashed ?? 'none', pass: o.crashed === null },
    { name: '/readyz 200 throughout', target: 'every poll', value: `${o.readyzOk}/${o.readyzTotal} (${o.readyzNot200} not 200, ${o.readyzTimeouts} no answer within 2 s)`, pass: o.readyzTotal > 0 && o.readyzOk === o.readyzTotal },
    { name: 'good device PUBACK p99', target: '< 100 ms', value: o.good ? `${fmtMs(o.good.p99Ms)} ms (${o.good.acked}/${o.good.sent} acked)` : 'no result', pass: o.good !== null && o.good.p99Ms < 100 && o.good.unacked === 0 }
  ]
  if (bool(f, 'write')) appendRecord('fuzz.jsonl', { scenario: 'fuzz', kind: 'checks', runId, ts: new Date().toISOString(), ...base, system: 'gateway', params, checks, command: `node --import tsx bench/fuzz.ts ${process.argv.slice(2).join(' ')}`.trim() })
  for (const [body, count] of Object.entries(o.readyzReasons)) process.stdout.write(`/readyz not 200 x${count}: ${body}\n`)
  process.stdout.write(table(['check', 'target', 'value', 'pass'], checks.map((c) => [c.name, c.target, c.value, c.pass ? 'yes' : 'NO']), false) + '\n')
}
process.stdout.write(table(['system', 'peak RSS MB', 'crashed', 'readyz', 'conns', 'idle p99 ms', 'good p99 ms', 'good max ms', 'acked/sent'], results.map(({ target, o }) => [
  target.name, o.peakRssMb.toFixed(0), o.crashed ? 'yes' : 'no', target.admin ? `${o.readyzOk}/${o.readyzTotal}` : '-', String(o.opened), fmtMs(o.idleP99Ms),
  o.good ? fmtMs(o.good.p99Ms) : '-', o.good ? fmtMs(o.good.maxMs) : '-', o.good ? `${o.good.acked}/${o.good.sent}` : '-'
]), false) + '\n')
cleanup.killAll()
