/**
 * Benchmark: how many devices at 1 reading/s the simulator drives from one core.
 *
 *   node --import tsx bench/sim-capacity.ts [--devices 1000,2500,5000,10000] [--window-s 20] [--warmup-s 5]
 *
 * The broker (Mosquitto, /usr/sbin/mosquitto, on a free port with a temp config; or Aedes
 * with --broker aedes) runs in its own process pinned to core 1; each device count runs in
 * a fresh simulator process pinned to core 0 (taskset). After every device connected and
 * a warm-up, the child measures a window: readings generated and acknowledged per second,
 * pacing error against the target, tick lateness, CPU and RSS. A point passes when every
 * device is connected and both rates are within 1% of the target. One JSON line a point,
 * to stdout and bench/results/sim-capacity.jsonl.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { createSimulation, simConfig } from '../device-sim/index.ts'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '..')

function arg (name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1]! : def
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function child (): Promise<void> {
  const n = Number(arg('child', '0'))
  const broker = arg('url', '')
  const windowS = Number(arg('window-s', '20'))
  const warmupS = Number(arg('warmup-s', '5'))
  const rate = Number(arg('rate', '1'))
  const sim = createSimulation(simConfig({ broker, devices: n, rate, receipts: false, connectRate: 2000, idPrefix: `cap${n}-`, progress: 'off', stopGraceMs: 2000, keepaliveS: 120 }))
  const t0 = Date.now()
  await sim.start()
  await sim.waitConnected(180_000)
  const connectS = (Date.now() - t0) / 1000
  await sleep(warmupS * 1000)
  sim.resetLateness()
  const s0 = sim.snapshot(); const c0 = process.cpuUsage(); const w0 = performance.now()
  await sleep(windowS * 1000)
  const s1 = sim.snapshot(); const c1 = process.cpuUsage(c0); const secs = (performance.now() - w0) / 1000
  const target = n * rate
  const genRate = (s1.generated - s0.generated) / secs
  const ackRate = (s1.acked - s0.acked) / secs
  const result = {
    devices: n,
    online: s1.online,
    connectS: Math.round(connectS * 10) / 10,
    targetRate: target,
    generatedRate: Math.round(genRate * 10) / 10,
    ackedRate: Math.round(ackRate * 10) / 10,
    pacingErrorPct: Math.round(1000 * (genRate - target) / target) / 10,
    ackedErrorPct: Math.round(1000 * (ackRate - target) / target) / 10,
    lateMs: { mean: Math.round(s1.lateness.meanMs * 10) / 10, p99: s1.lateness.p99Ms, max: Math.round(s1.lateness.maxMs) },
    pubackMs: sim.stats.pubackMs.summary(),
    unackedAtEnd: s1.unacked,
    skipped: s1.skipped - s0.skipped,
    cpuPct: Math.round(100 * (c1.user + c1.system) / 1e6 / secs),
    rssMiB: Math.round(process.memoryUsage().rss / 1048576),
    heapMiB: Math.round(process.memoryUsage().heapUsed / 1048576)
  }
  process.stdout.write(JSON.stringify({ msg: 'result', result }) + '\n')
  await sim.stop()
  process.exit(0)
}

async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const p = (s.address() as { port: number }).port
  await new Promise<void>((r) => s.close(() => r()))
  return p
}

async function startBroker (kind: string, dir: string): Promise<{ url: string, proc: ChildProcess, version: string }> {
  const port = await freePort()
  let proc: ChildProcess
  let version: string
  if (kind === 'mosquitto') {
    const conf = join(dir, 'mosquitto.conf')
    await writeFile(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\nmax_queued_messages 100000\nlog_type error\n`)
    proc = spawn('taskset', ['-c', '1', '/usr/sbin/mosquitto', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
    // `mosquitto -h` prints its version and exits with status 3
    const { spawnSync } = await import('node:child_process')
    version = spawnSync('/usr/sbin/mosquitto', ['-h']).stdout.toString().split('\n')[0]!.trim()
  } else {
    const src = join(dir, 'aedes.mjs')
    await writeFile(src, `import { Aedes } from ${JSON.stringify(join(ROOT, 'node_modules/aedes/aedes.js'))}\nimport net from 'node:net'\nconst b = await Aedes.createBroker()\nnet.createServer(b.handle).listen(${port}, '127.0.0.1')\n`)
    proc = spawn('taskset', ['-c', '1', process.execPath, src], { stdio: ['ignore', 'ignore', 'pipe'] })
    version = 'aedes ' + (JSON.parse(execFileSync('node', ['-p', `JSON.stringify(require(${JSON.stringify(join(ROOT, 'node_modules/aedes/package.json'))}))`]).toString()) as { version: string }).version
  }
  // wait until it accepts connections
  const { connect } = await import('node:net')
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => { const s = connect(port, '127.0.0.1'); s.on('connect', () => { s.destroy(); r(true) }); s.on('error', () => r(false)) })
    if (ok) break
    await sleep(50)
  }
  return { url: `mqtt://127.0.0.1:${port}`, proc, version }
}

async function parent (): Promise<void> {
  const counts = arg('devices', '1000,2500,5000,10000').split(',').map(Number)
  const brokerKind = arg('broker', 'mosquitto')
  const windowS = arg('window-s', '20')
  const warmupS = arg('warmup-s', '5')
  const rate = arg('rate', '1')
  const dir = await mkdtemp(join(tmpdir(), 'sim-capacity-'))
  const broker = await startBroker(brokerKind, dir)
  const sha = (() => { try { return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim() } catch { return 'unknown' } })()
  await mkdir(join(HERE, 'results'), { recursive: true })
  try {
    for (const n of counts) {
      const proc = spawn('taskset', ['-c', '0', process.execPath, '--import', 'tsx', fileURLToPath(import.meta.url), '--child', String(n), '--url', broker.url, '--window-s', windowS, '--warmup-s', warmupS, '--rate', rate], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
      let result: Record<string, unknown> | undefined
      createInterface({ input: proc.stdout! }).on('line', (l) => { try { const o = JSON.parse(l) as { msg?: string, result?: Record<string, unknown> }; if (o.msg === 'result') result = o.result } catch {} })
      await new Promise((r) => proc.on('exit', r))
      if (!result) { process.stderr.write(`sim-capacity: no result for ${n} devices\n`); continue }
      const pass = result.online === n && Math.abs(result.pacingErrorPct as number) <= 1 && Math.abs(result.ackedErrorPct as number) <= 1
      const line = JSON.stringify({ bench: 'sim-capacity', time: new Date().toISOString(), sha, node: process.version, broker: broker.version, params: { devices: n, rate: Number(rate), windowS: Number(windowS), warmupS: Number(warmupS), payload: 'cbor', qos: 1, simCores: 1 }, ...result, pass })
      process.stdout.write(line + '\n')
      await appendFile(join(HERE, 'results', 'sim-capacity.jsonl'), line + '\n')
    }
  } finally {
    broker.proc.kill('SIGTERM')
    await rm(dir, { recursive: true, force: true })
  }
}

if (process.argv.includes('--child')) await child()
else await parent()
