/**
 * Live heap of the gateway (tsc build) after full GCs: idle, then with N devices connected
 * and publishing slowly. Sizes a `--max-old-space-size` cap (README "Memory on small boxes").
 *
 *   node --import tsx bench/live-heap.ts [--connections 2000]
 *
 * Prints one line per phase; nothing is recorded (the figures do not depend on load).
 */
import { join } from 'node:path'
import { helpText, num, parseFlags, type FlagSpec } from './lib/args.ts'
import { Cleanup, type Proc } from './lib/procs.ts'
import { compiledBuild, ROOT } from './lib/systems.ts'

const FLAGS: FlagSpec = {
  connections: { type: 'number', default: 2000, doc: 'devices connected for the second measurement' },
  'rate-per-s': { type: 'number', default: 200, doc: 'total readings/s they publish meanwhile' }
}

async function liveHeap (gw: Proc): Promise<{ heapUsedMb: number, rssMb: number }> {
  const line = gw.waitFor((o) => o.msg === 'live-heap', 10_000, 'live-heap line')
  process.kill(gw.pid, 'SIGUSR2')
  return await line as unknown as { heapUsedMb: number, rssMb: number }
}

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(helpText(FLAGS) + '\n'); return }
  const n = num(f, 'connections')
  const cleanup = new Cleanup()
  const build = await compiledBuild(cleanup)
  const dir = cleanup.tempDir('bench-heap-')
  const gw = cleanup.spawn('gateway', [process.execPath, '--expose-gc', '-r', join(ROOT, 'bench/lib/gc-report.cjs'), join(build, 'gateway/main.js'),
    '--gateway-id', 'bench', '--data-dir', dir, '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--durability', 'process', '--max-connections', String(n + 100)],
  { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'error' } })
  const ready = await gw.waitFor((o) => o.msg === 'ready', 30_000, 'gateway ready')
  const idle = await liveHeap(gw)
  process.stdout.write(`idle: live heap ${idle.heapUsedMb.toFixed(1)} MB (RSS ${idle.rssMb.toFixed(0)} MB)\n`)
  const durationS = 8
  const lg = cleanup.spawn('loadgen', [process.execPath, '--import', 'tsx', 'bench/loadgen.ts', '--port', String(ready.mqttPort),
    '--connections', String(n), '--rate', String(num(f, 'rate-per-s')), '--duration-s', String(durationS), '--warmup-s', '2'], { cwd: ROOT })
  await lg.waitFor((o) => o.type === 'phase' && o.phase === 'measure', 120_000, 'loadgen connected')
  await new Promise((r) => setTimeout(r, 3000))
  const busy = await liveHeap(gw)
  const perConn = (busy.heapUsedMb - idle.heapUsedMb) * 1024 / n
  process.stdout.write(`${n} devices connected: live heap ${busy.heapUsedMb.toFixed(1)} MB (RSS ${busy.rssMb.toFixed(0)} MB), ~${perConn.toFixed(1)} KB per connection\n`)
  await lg.waitFor((o) => o.type === 'result', (durationS + 60) * 1000, 'loadgen result')
  await gw.stop('SIGTERM', 10_000)
  cleanup.killAll()
}

main().catch((err: Error) => { process.stderr.write(`live-heap bench failed: ${err.stack ?? err.message}\n`); process.exit(1) })
