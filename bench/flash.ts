/**
 * Flash wear: bytes written per reading, for each durability mode at several
 * paced rates, with the upstream healthy (an instant-ack upstream: items are deleted soon)
 * and down (refused: the backlog builds). Two levels:
 *
 *   process  /proc/PID/io write_bytes of the gateway: bytes it sent to the block layer
 *            (LevelDB log, tables and compactions, all in the gateway process; a page
 *            rewritten after an fsync counts again)
 *   device   sectors written of the device holding the data dir: adds the file system's
 *            journal (ext4 jbd2) and metadata. By default the data dirs live on a private
 *            ext4 file system on a loop device (bench/lib/loop-fs.ts, needs root), so the
 *            count is the gateway's alone; with `--loop-fs-mb 0` they live in the temp dir
 *            and the device's idle rate, sampled just before each case, is subtracted (other
 *            jobs on a shared box then make it noisy)
 *
 *   node --import tsx bench/flash.ts [--rates 10,200,5000] [--modes power,process]
 *     [--upstream healthy,down] [--duration-s 30] [--baseline-rev REV]
 *     [--variants 'name=--gateway --flags;name2=...']
 *
 * Systems: the compiled gateway of the working tree (`current`, with its defaults), each
 * `--variants` entry (the working tree with extra gateway flags), and with `--baseline-rev`
 * the compiled gateway of that git revision (`baseline`), interleaved per case so all share
 * the host's conditions. Load: bench/loadgen.ts open loop, `--devices` connections, QoS 1,
 * the same 79-byte CBOR reading the intake bench sends; PUBACK latency comes with it.
 *
 * LevelDB compactions: the window counts every table LevelDB wrote in it (its LOG file
 * names each one with its size). At low rates a window does not fill a memtable, so each
 * record also has `amortizedBytesPerReading`: the log writes per reading measured here plus
 * the table writes per reading of the same system, mode and upstream at the highest rate
 * of the run (where tables were written): what the row costs once compactions catch up.
 * Appends to bench/results/flash.jsonl; bench/update-results.ts renders bench/RESULTS.md.
 */
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { startAckUpstream } from './lib/ack-upstream.ts'
import { mountLoopFs, type LoopFs } from './lib/loop-fs.ts'
import { bool, helpText, num, parseFlags, str, type FlagSpec } from './lib/args.ts'
import { canPin, Cleanup, pinned, RssSampler } from './lib/procs.ts'
import { appendRecord, fmtInt, fmtMs, gitSha, hostInfo, table } from './lib/results.ts'
import { commandLine, compiledGateway, ROOT } from './lib/systems.ts'
import type { BenchRecord, Check, LoadResult } from './lib/types.ts'

const FLAGS: FlagSpec = {
  rates: { type: 'string', default: '10,200,5000', doc: 'paced readings/s in total, comma list' },
  modes: { type: 'string', default: 'power,process', doc: 'gateway --durability values' },
  upstream: { type: 'string', default: 'healthy,down', doc: 'healthy (instant-ack upstream, items deleted soon) and/or down (refused, backlog builds)' },
  devices: { type: 'number', default: 100, doc: 'MQTT connections (one device each)' },
  'duration-s': { type: 'number', default: 30, doc: 'measured window per case' },
  'warmup-s': { type: 'number', default: 3, doc: 'load before the window, not counted' },
  'idle-s': { type: 'number', default: 3, doc: 'device idle rate sampled for this long before each case' },
  'loop-fs-mb': { type: 'number', default: 1024, doc: 'size of the private ext4 loop file system for the data dirs (0 = the temp dir on the shared disk)' },
  'baseline-rev': { type: 'string', doc: 'also run the compiled gateway of this git revision (system "baseline")' },
  variants: { type: 'string', default: '', doc: 'extra systems of the working tree: "name=--flag value ...;name2=..."' },
  current: { type: 'bool', default: true, doc: 'run the working tree with its defaults (system "current")' },
  pin: { type: 'bool', default: true, doc: 'gateway on core 1, load generator on core 0 (taskset)' },
  write: { type: 'bool', default: true, doc: 'append to bench/results/flash.jsonl' },
  echo: { type: 'bool', default: false, doc: 'echo child output' }
}

type Sys = { name: string, rev?: string, args: string[] }
type Case = { mode: string, rate: number, upstream: string }

/** major:minor of the whole disk holding `path` (a partition's parent), and its stat file. */
function deviceOf (path: string): { name: string, sectors: () => number } | null {
  const dev = statSync(path).dev
  const major = Math.floor(dev / 256) & 0xfff
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00)
  const base = `/sys/dev/block/${major}:${minor}`
  try {
    const partition = (() => { try { readFileSync(join(base, 'partition')); return true } catch { return false } })()
    const stat = partition ? join(base, '..', 'stat') : join(base, 'stat')
    readFileSync(stat)
    const uevent = readFileSync(join(partition ? join(base, '..') : base, 'uevent'), 'utf8')
    return { name: /DEVNAME=(\S+)/.exec(uevent)?.[1] ?? `${major}:${minor}`, sectors: () => sectorsWritten(stat) }
  } catch { return null }
}

const sectorsWritten = (stat: string): number => Number(readFileSync(stat, 'utf8').trim().split(/\s+/)[6])
function writeBytes (pid: number): number | null {
  try { return Number(/^write_bytes: (\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1]) } catch { return null }
}

/** Bytes of the tables LevelDB wrote (memtable flushes and compactions), from its LOG text. */
function tableBytes (logText: string): { tables: number, bytes: number, compactions: number } {
  let tables = 0
  let bytes = 0
  let compactions = 0
  for (const m of logText.matchAll(/Level-0 table #\d+: (\d+) bytes OK|Generated table #\d+@\d+: \d+ keys, (\d+) bytes|(Compacted \d+@\d+)/g)) {
    if (m[3]) { compactions++; continue }
    tables++
    bytes += Number(m[1] ?? m[2])
  }
  return { tables, bytes, compactions }
}
const readLog = (dir: string): string => { try { return readFileSync(join(dir, 'LOG'), 'utf8') } catch { return '' } }

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(`usage: node --import tsx bench/flash.ts [flags]\n${helpText(FLAGS)}\n`); return }
  const cleanup = new Cleanup()
  const echo = bool(f, 'echo')
  const durationS = num(f, 'duration-s')
  const warmupS = num(f, 'warmup-s')
  const idleS = num(f, 'idle-s')
  const devices = num(f, 'devices')
  const pin = bool(f, 'pin') && canPin()
  const systems: Sys[] = []
  const baseRev = str(f, 'baseline-rev')
  if (baseRev) systems.push({ name: 'baseline', rev: baseRev, args: [] })
  if (bool(f, 'current')) systems.push({ name: 'current', args: [] })
  for (const v of str(f, 'variants')!.split(';').map((s) => s.trim()).filter(Boolean)) {
    const eq = v.indexOf('=')
    if (eq <= 0) throw new Error(`--variants: ${v} is not name=flags`)
    systems.push({ name: v.slice(0, eq), args: v.slice(eq + 1).split(' ').filter(Boolean) })
  }
  const cases: Case[] = []
  for (const upstream of str(f, 'upstream')!.split(',')) {
    for (const mode of str(f, 'modes')!.split(',')) {
      for (const rate of str(f, 'rates')!.split(',').map(Number)) cases.push({ mode, rate, upstream })
    }
  }
  const builds = new Map<string, string>()
  for (const s of systems) builds.set(s.name, await compiledGateway(cleanup, s.rev))
  const up = await startAckUpstream()
  let loop: LoopFs | null = null
  if (num(f, 'loop-fs-mb') > 0) {
    const l = mountLoopFs(cleanup, num(f, 'loop-fs-mb'))
    if ('unavailable' in l) process.stderr.write(`no private loop file system (${l.unavailable}): device-level counts include the rest of the box\n`)
    else loop = l
  }
  const runId = new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + '-' + process.pid
  const pinNote = `${pin ? 'gateway on core 1, load generator on core 0 (taskset)' : 'not pinned'}; data dirs on ${loop ? `a private ${num(f, 'loop-fs-mb')} MB ext4 loop file system` : 'the shared disk'}`
  const base = { scenario: 'flash', kind: 'result' as const, runId, gitSha: gitSha(), node: process.version, host: hostInfo(pinNote), command: commandLine(['node', '--import', 'tsx', 'bench/flash.ts', ...process.argv.slice(2)]) }
  process.stderr.write(`flash bench ${runId}: ${cases.length} cases x ${systems.map((s) => s.name).join(', ')}; ${durationS} s window + ${warmupS} s warm-up each\n`)
  const recs: BenchRecord[] = []
  let prefix = 0
  for (const c of cases) {
    for (const sys of systems) {
      const dir = loop ? join(loop.dir, `case${prefix}`) : cleanup.tempDir('bench-flash-')
      if (loop) mkdirSync(dir)
      const dev = loop ? { name: loop.device, sectors: loop.sectorsWritten } : deviceOf(dir)
      // the device's background rate just before the case (other jobs on a shared box)
      const idle0 = dev ? dev.sectors() : 0
      await new Promise((r) => setTimeout(r, idleS * 1000))
      const idleBps = dev ? (dev.sectors() - idle0) * 512 / idleS : 0
      const upstreamUrl = c.upstream === 'healthy' ? up.url : 'http://127.0.0.1:9'
      const gwArgv = pinned(pin ? 1 : null, [process.execPath, builds.get(sys.name)!, '--gateway-id', 'bench', '--data-dir', dir, '--host', '127.0.0.1',
        '--mqtt-port', '0', '--admin-port', '0', '--upstream', upstreamUrl, '--token', 'bench-token-pad-', '--durability', c.mode, ...sys.args])
      const gw = cleanup.spawn(`gateway-${sys.name}`, gwArgv, { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'warn' }, echo })
      const ready = await gw.waitFor((o) => o.msg === 'ready', 30_000, 'gateway ready')
      const rss = new RssSampler(gw.pid)
      const lgArgv = pinned(pin ? 0 : null, [process.execPath, '--import', 'tsx', 'bench/loadgen.ts', '--port', String(ready.mqttPort), '--connections', String(devices),
        '--rate', String(c.rate), '--duration-s', String(durationS), '--warmup-s', String(warmupS), '--id-prefix', `flash${prefix++}-`])
      const lg = cleanup.spawn('loadgen', lgArgv, { cwd: ROOT, echo })
      const refused0 = up.refused()
      type Snap = { wb: number | null, sectors: number, logLen: number, t: number }
      const snap = (): Snap => ({ wb: writeBytes(gw.pid), sectors: dev ? dev.sectors() : 0, logLen: readLog(dir).length, t: performance.now() })
      let s0: Snap | null = null
      let s1: Snap | null = null
      lg.onLine((_l, o) => {
        if (o?.type === 'phase' && o.phase === 'measure') s0 = snap()
        if (o?.type === 'phase' && o.phase === 'drain') s1 = snap()
      })
      const load = await lg.waitFor((o) => o.type === 'result', (durationS + warmupS + 120) * 1000, 'loadgen result') as unknown as LoadResult
      const upstreamRefused = up.refused() - refused0
      if (c.upstream === 'healthy' && upstreamRefused > 0) throw new Error(`${sys.name}, ${c.mode} ${c.rate}/s: the instant-ack upstream refused ${upstreamRefused} requests, so this is not a healthy-upstream case`)
      const peakRssMb = Math.round(rss.stop() / 102.4) / 10
      const logText = readLog(dir)
      await lg.stop('SIGTERM', 3000)
      await gw.stop('SIGTERM', 10_000)
      if (loop) rmSync(dir, { recursive: true, force: true })
      else cleanup.removeDir(dir)
      if (!s0 || !s1) throw new Error('loadgen printed no measure/drain phase lines')
      const a = s0 as Snap
      const b = s1 as Snap
      const secs = (b.t - a.t) / 1000
      const readings = load.windowAcked
      const tb = tableBytes(logText.slice(a.logLen, b.logLen))
      const procBytes = a.wb !== null && b.wb !== null ? b.wb - a.wb : null
      const devBytes = dev ? (b.sectors - a.sectors) * 512 : null
      const devNet = devBytes === null ? null : Math.max(0, devBytes - idleBps * secs)
      const per = (x: number | null): number | null => x === null || readings === 0 ? null : Math.round(x / readings)
      const rec: BenchRecord = {
        ...base,
        ts: new Date().toISOString(),
        system: sys.name,
        ...(sys.name !== 'baseline' && baseRev ? { baseline: 'baseline' } : {}),
        systemVersion: sys.rev ? `git ${sys.rev}` : 'working tree',
        params: { row: `${c.mode} ${c.rate}/s upstream ${c.upstream}`, mode: c.mode, rate: c.rate, upstream: c.upstream, devices, durationS },
        msgsPerSec: load.msgsPerSec,
        p50Ms: load.latency.p50Ms,
        p99Ms: load.latency.p99Ms,
        p999Ms: load.latency.p999Ms,
        peakRssMb,
        readings,
        procBytesPerReading: per(procBytes),
        devBytesPerReading: per(devNet),
        devIdleKBps: Math.round(idleBps / 1024),
        device: dev?.name ?? null,
        tablesWritten: tb.tables,
        compactions: tb.compactions,
        tableBytesPerReading: per(tb.bytes),
        logBytesPerReading: per(procBytes === null ? null : Math.max(0, procBytes - tb.bytes)),
        errors: load.errors.skipped + load.errors.disconnects + load.errors.unacked + load.errors.connect,
        systemCommand: commandLine(gwArgv).replace(process.execPath, 'node').replace(builds.get(sys.name)!, '$BUILD/gateway/main.js').replace(dir, '$DATA') + (sys.rev ? `  # $BUILD from git revision ${sys.rev}` : '')
      }
      recs.push(rec)
      process.stderr.write(`  ${String(rec.params.row).padEnd(30)} ${sys.name.padEnd(10)} ${fmtInt(readings).padStart(7)} readings  process ${fmtInt(rec.procBytesPerReading as number)} B/reading (tables ${fmtInt(rec.tableBytesPerReading as number)}, ${tb.tables} written)  device ${fmtInt(rec.devBytesPerReading as number)} B/reading (idle ${String(rec.devIdleKBps)} KB/s)  PUBACK p99 ${fmtMs(load.latency.p99Ms)} ms  RSS ${peakRssMb} MB  errors ${String(rec.errors)}\n`)
    }
  }
  await up.close()
  // tables per reading at the highest rate of each (system, mode, upstream): the compaction share of every rate
  for (const r of recs) {
    const peers = recs.filter((x) => x.system === r.system && x.params.mode === r.params.mode && x.params.upstream === r.params.upstream && (x.tablesWritten as number) > 0)
    const top = peers.sort((x, y) => (y.params.rate as number) - (x.params.rate as number))[0]
    r.amortizedBytesPerReading = r.logBytesPerReading === null ? null : (r.logBytesPerReading as number) + (top ? top.tableBytesPerReading as number : 0)
    if (bool(f, 'write')) appendRecord('flash.jsonl', r)
  }
  const checks = evaluate(recs)
  const head = ['case', 'system', 'readings', 'process B/reading', 'amortized B/reading', 'device B/reading', 'PUBACK p99 ms', 'RSS MB']
  const body = recs.map((r) => [String(r.params.row), r.system, fmtInt(r.readings as number), fmtInt(r.procBytesPerReading as number), fmtInt(r.amortizedBytesPerReading as number), fmtInt(r.devBytesPerReading as number), fmtMs(r.p99Ms), String(r.peakRssMb)])
  process.stdout.write(`\nFlash bench (${durationS} s windows)\n\n${table(head, body, false)}\n\nTargets\n`)
  for (const c of checks) process.stdout.write(`  ${c.pass === null ? 'N/A ' : c.pass ? 'PASS' : 'MISS'}  ${c.name}: ${c.value} (target ${c.target})\n`)
  if (bool(f, 'write') && checks.length) {
    appendRecord('flash.jsonl', { ...base, kind: 'checks', ts: new Date().toISOString(), system: '-', params: {}, checks })
    process.stdout.write('\nappended to bench/results/flash.jsonl; regenerate bench/RESULTS.md with: node --import tsx bench/update-results.ts\n')
  }
  cleanup.killAll()
}

/** The flash-wear goals (an SD card wears out with the bytes written: at most 600 B a reading at 200/s with fsync), for every system that is not the baseline (process-level bytes, amortized). */
function evaluate (recs: BenchRecord[]): Check[] {
  const out: Check[] = []
  const goals: Array<{ mode: string, rate: number, max: number, p99?: number }> = [
    { mode: 'power', rate: 200, max: 600, p99: 50 },
    { mode: 'power', rate: 5000, max: 400 },
    { mode: 'process', rate: 200, max: 200 }
  ]
  for (const sys of new Set(recs.map((r) => r.system))) {
    for (const g of goals) {
      for (const r of recs.filter((x) => x.system === sys && x.params.mode === g.mode && x.params.rate === g.rate)) {
        const b = r.amortizedBytesPerReading as number | null
        const pass = b === null ? null : b <= g.max && (g.p99 === undefined || r.p99Ms! <= g.p99)
        out.push({
          name: `${sys}: bytes written per reading (process, compactions amortized), ${g.mode} ${g.rate}/s, upstream ${String(r.params.upstream)}${g.p99 ? ', PUBACK p99' : ''}`,
          target: `<= ${g.max} B${g.p99 ? `, p99 <= ${g.p99} ms` : ''}`,
          value: `${fmtInt(b)} B${g.p99 ? `, p99 ${fmtMs(r.p99Ms)} ms` : ''}`,
          pass: sys === 'baseline' ? null : pass
        })
      }
    }
  }
  return out
}

main().catch((err: Error) => { process.stderr.write(`flash bench failed: ${err.stack ?? err.message}\n`); process.exit(1) })
