/**
 * Benchmark: how many devices at 1 reading/s the simulator drives from one core.
 *
 *   node --import tsx bench/sim-capacity.ts [--devices 1000,2500,5000,10000] [--window-s 20] [--warmup-s 5]
 *
 * The broker (Mosquitto, /usr/sbin/mosquitto, on a free port with a temp config; or Aedes
 * with --broker aedes) runs in its own process pinned to core 1; each device count runs in
 * a fresh simulator process (device-sim/capacity-probe.ts: bench/ does not import the
 * simulator) pinned to core 0 (taskset). After every device connected and a warm-up, it measures a window: readings generated and acknowledged per second,
 * pacing error against the target, tick lateness, CPU and RSS. A point passes when every
 * device is connected and both rates are within 1% of the target. One JSON line a point,
 * to stdout and bench/results/sim-capacity.jsonl.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { appendFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { helpText, num, parseFlags, str, type FlagSpec } from './lib/args.ts'
import { freePort } from './lib/procs.ts'

const HERE = dirname(fileURLToPath(import.meta.url))
const ROOT = resolve(HERE, '..')

const FLAGS: FlagSpec = {
  devices: { type: 'string', default: '1000,2500,5000,10000', doc: 'device counts, comma list (one simulator process each)' },
  broker: { type: 'string', default: 'mosquitto', doc: 'mosquitto or aedes' },
  'window-s': { type: 'number', default: 20, doc: 'measured window per point' },
  'warmup-s': { type: 'number', default: 5, doc: 'load before the window' },
  rate: { type: 'number', default: 1, doc: 'readings/s per device' }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

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

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(`usage: node --import tsx bench/sim-capacity.ts [flags]\n${helpText(FLAGS)}\n`); return }
  const counts = str(f, 'devices')!.split(',').map(Number)
  const brokerKind = str(f, 'broker')!
  const windowS = String(num(f, 'window-s'))
  const warmupS = String(num(f, 'warmup-s'))
  const rate = String(num(f, 'rate'))
  const dir = await mkdtemp(join(tmpdir(), 'sim-capacity-'))
  const broker = await startBroker(brokerKind, dir)
  const sha = (() => { try { return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim() } catch { return 'unknown' } })()
  await mkdir(join(HERE, 'results'), { recursive: true })
  try {
    for (const n of counts) {
      const proc = spawn('taskset', ['-c', '0', process.execPath, '--import', 'tsx', join(ROOT, 'device-sim', 'capacity-probe.ts'), '--devices', String(n), '--url', broker.url, '--window-s', windowS, '--warmup-s', warmupS, '--rate', rate], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
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

await main()
