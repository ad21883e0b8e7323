/**
 * One point of `bench/sim-capacity.ts`, run as its own process (bench/ talks to the
 * simulator through a process, never an import): N simulated devices against a broker;
 * after every device connected and a warm-up, one measured window of generated and
 * acknowledged readings per second, pacing error, tick lateness, CPU and RSS. Prints one
 * JSON line `{ msg: 'result', result }` and exits.
 *
 *   node --import tsx device-sim/capacity-probe.ts --devices N --url mqtt://HOST:PORT [--window-s 20] [--warmup-s 5] [--rate 1]
 */
import { parseConfig } from '../common/index.ts'
import { createSimulation, simConfig } from './index.ts'

const schema = {
  devices: { type: 'int', min: 1, doc: 'simulated devices' },
  url: { type: 'string', doc: 'broker URL' },
  windowS: { type: 'number', default: 20, min: 1, doc: 'measured window (s)' },
  warmupS: { type: 'number', default: 5, min: 0, doc: 'load before the window (s)' },
  rate: { type: 'number', default: 1, min: 0.001, doc: 'readings/s per device' }
} as const

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

const c = parseConfig(schema, { argv: process.argv.slice(2), env: {}, envPrefix: 'SIM_PROBE' })
const n = c.devices!
const sim = createSimulation(simConfig({ broker: c.url!, devices: n, rate: c.rate, receipts: false, connectRate: 2000, idPrefix: `cap${n}-`, progress: 'off', stopGraceMs: 2000, keepaliveS: 120 }))
const t0 = Date.now()
await sim.start()
await sim.waitConnected(180_000)
const connectS = (Date.now() - t0) / 1000
await sleep(c.warmupS * 1000)
sim.resetLateness()
const s0 = sim.snapshot(); const c0 = process.cpuUsage(); const w0 = performance.now()
await sleep(c.windowS * 1000)
const s1 = sim.snapshot(); const c1 = process.cpuUsage(c0); const secs = (performance.now() - w0) / 1000
const target = n * c.rate
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
