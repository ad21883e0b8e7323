/**
 * The admin page's work, measured alone: what one second of a viewer costs the
 * gateway, independent of how busy the box is. A page viewer causes, per second: one
 * sample (taken whether or not anyone watches), its JSON frame written to the SSE stream,
 * half a /devices query (the page polls every 2 s, 50 rows) and a tenth of a /dlq page.
 * Each is timed over many repetitions in CPU time (process.cpuUsage), on a Metrics filled
 * like a gateway at 5,000 readings/s from `--devices` devices, and summed into % of a core.
 *
 *   node --import tsx bench/admin-cost.ts [--devices 200] [--partitions 8] [--reps 2000]
 *
 * Appends one record to bench/results/admin-cost.jsonl.
 */
import { bool, helpText, num, parseFlags, type FlagSpec } from './lib/args.ts'
import { appendRecord, gitSha, hostInfo } from './lib/results.ts'
import { commandLine } from './lib/systems.ts'
import { LiveSampler, type LiveStatus } from '../gateway/admin/live.ts'
import { Metrics } from '../gateway/metrics/index.ts'

const FLAGS: FlagSpec = {
  devices: { type: 'number', default: 200, doc: 'devices in the devices table' },
  partitions: { type: 'number', default: 8, doc: 'partitions in each sample' },
  reps: { type: 'number', default: 2000, doc: 'repetitions of each operation' },
  write: { type: 'bool', default: true, doc: 'append to bench/results/admin-cost.jsonl' }
}

function cpuUs (): number { const u = process.cpuUsage(); return u.user + u.system }

async function timeIt (reps: number, fn: () => unknown): Promise<number> {
  for (let i = 0; i < Math.min(200, reps); i++) await fn() // warm up
  const t0 = cpuUs()
  for (let i = 0; i < reps; i++) await fn()
  return (cpuUs() - t0) / reps
}

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(helpText(FLAGS) + '\n'); return }
  const devices = num(f, 'devices')
  const partitions = num(f, 'partitions')
  const reps = num(f, 'reps')
  const m = new Metrics()
  // a second of a gateway at 5,000 readings/s: counters, PUBACK latencies, device stats
  for (let i = 0; i < 5000; i++) {
    m.intake.inc({ outcome: 'stored' })
    m.pubackLatency.observe(0.001 + (i % 50) / 10_000)
    m.devices.reading(`dev-${String(i % devices).padStart(4, '0')}`, i)
  }
  m.upstreamItems.inc({ code: 'stored' }, 5000)
  const status: LiveStatus = {
    gateway: 'gw1',
    epoch: 'bench-epoch-0001',
    buffered: { items: 1234, bytes: 123456 },
    bufferFull: false,
    dlq: { items: 17 },
    partitions: Array.from({ length: partitions }, (_, p) => ({ p, depth: 100 + p, oldestAgeMs: 800 + p })),
    upstream: { state: 'ok', url: 'http://127.0.0.1:8080/v1/batches', lastError: null, lastOkAt: Date.now() },
    clients: { connected: devices }
  }
  const sampler = new LiveSampler(m, { status: async () => status, ready: () => ({ ready: true, reasons: [] }) })
  const tick = (sampler as unknown as { tick: () => Promise<void> }).tick.bind(sampler)
  let frame = ''
  sampler.onSample((s) => { frame = `data: ${JSON.stringify(s)}\n\n` })
  const sampleUs = await timeIt(reps, tick)
  const frameUs = await timeIt(reps, () => { frame = `data: ${JSON.stringify(sampler.latest())}\n\n` })
  const devicesUs = await timeIt(reps, () => JSON.stringify(m.devices.query({ q: '', limit: 50 })))
  const historyUs = await timeIt(Math.max(10, reps / 20), () => JSON.stringify(sampler.recent()))
  // per second with one viewer: the sample (also without a viewer), one frame, half a devices query
  const viewerUs = frameUs + devicesUs / 2
  const rec = {
    scenario: 'admin-cost', kind: 'result' as const, runId: new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + '-' + process.pid, ts: new Date().toISOString(),
    gitSha: gitSha(), node: process.version, host: hostInfo('not pinned'), system: 'gateway-admin',
    params: { devices, partitions, reps },
    sampleUs: Number(sampleUs.toFixed(1)),
    frameUs: Number(frameUs.toFixed(1)),
    devicesQueryUs: Number(devicesUs.toFixed(1)),
    historyUs: Number(historyUs.toFixed(1)),
    frameBytes: Buffer.byteLength(frame),
    idleCorePct: Number((sampleUs / 1e4).toFixed(3)),
    viewerCorePct: Number((viewerUs / 1e4).toFixed(3)),
    command: commandLine(['node', '--import', 'tsx', 'bench/admin-cost.ts', ...process.argv.slice(2)])
  }
  process.stdout.write(JSON.stringify(rec) + '\n')
  if (bool(f, 'write')) appendRecord('admin-cost.jsonl', rec)
  process.stderr.write(`sample ${rec.sampleUs} us/s (taken with or without viewers: ${rec.idleCorePct} % of a core); per viewer: SSE frame ${rec.frameUs} us (${rec.frameBytes} B), devices query (50 of ${devices}) ${rec.devicesQueryUs} us every 2 s: ${rec.viewerCorePct} % of a core; history on connect ${rec.historyUs} us\n`)
}

main().catch((err: Error) => { process.stderr.write(`admin-cost bench failed: ${err.stack ?? err.message}\n`); process.exit(1) })
