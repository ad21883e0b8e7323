/**
 * Bytes per reading on the uplink: the same batch of readings in every wire format
 * (bench/lib/wire-formats.ts: JSON, protocol v1, protocol v2, SenML-CBOR, InfluxDB line
 * protocol), raw and compressed (gzip, deflate, brotli q5), on two data sets
 * (bench/lib/datasets.ts: the simulator's sensors, noisier ones, and a stress case), with the encode and
 * decode CPU per reading on one core (compression included). Pure computation, no processes.
 *
 *   node --import tsx bench/cbor-size.ts [--items 500] [--devices 100] [--ms 300]
 *
 * Goals (docs/protocol-v2.md): v2 at most 30 bytes per reading, v2 compressed at most 8.
 */
import assert from 'node:assert/strict'
import { isDeepStrictEqual } from 'node:util'
import { decodeTrusted, encodeBatchRaw, encodeBatchV2, encodeItem, validateItem, type BatchItem } from '../protocol/index.ts'
import { helpText, num, parseFlags, type FlagSpec } from './lib/args.ts'
import { noisyDataset, simDataset, stressDataset } from './lib/datasets.ts'
import { appendRecord, gitSha, hostInfo } from './lib/results.ts'
import { commandLine } from './lib/systems.ts'
import { compressions, formats, type Env } from './lib/wire-formats.ts'

const FLAGS: FlagSpec = {
  items: { type: 'number', default: 500, doc: 'readings in the batch (the gateway\'s default batchMaxItems)' },
  devices: { type: 'number', default: 100, doc: 'devices the readings come from' },
  ms: { type: 'number', default: 300, doc: 'time spent timing each encode and decode' },
  write: { type: 'bool', default: true, doc: 'append to bench/results/cbor-size.jsonl' }
}

const f = parseFlags(process.argv.slice(2), FLAGS)
if (f.get('help')) { process.stdout.write(helpText(FLAGS) + '\n'); process.exit(0) }
const n = num(f, 'items')
const devices = num(f, 'devices')
const budgetMs = num(f, 'ms')

/**
 * Microseconds per reading of fn over the batch: warmed up for budgetMs, then the fastest
 * of 5 rounds of budgetMs / 5 (the box is shared: the fastest round is the least disturbed).
 */
function usPerReading (fn: () => unknown): number {
  const round = (ms: number): number => {
    let reps = 0
    const t0 = performance.now()
    let t = t0
    while (t - t0 < ms || reps < 2) { fn(); reps++; t = performance.now() }
    return (t - t0) * 1000 / reps / n
  }
  round(budgetMs)
  return Math.min(...Array.from({ length: 5 }, () => round(budgetMs / 5)))
}

const runId = new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + '-' + process.pid
const env: Env = { gateway: 'gw-0001', epoch: 'XVrYgH5_6rtHZXPa', batch: '9f3a2c7d1e5b4a60', floors: [[3, 250_000]] }
const datasets: Record<string, BatchItem[]> = { sim: simDataset(n, devices), noisy: noisyDataset(n, devices), stress: stressDataset(n, devices) }
const rows: string[] = []
for (const [dataset, items] of Object.entries(datasets)) {
  for (const fmt of formats) {
    const raw = fmt.encode(env, items)
    if (fmt.name === 'v2') {
      // lossless, or the figures mean nothing
      const back = (fmt.decode(raw) as { items: unknown[] }).items.map(validateItem)
      assert.ok(isDeepStrictEqual(back, items), `v2 round trip of the ${dataset} data set`)
    }
    const variants: [string, string | null][] = [[fmt.name, null], ...Object.keys(compressions).map((c): [string, string] => [`${fmt.name}+${c}`, c])]
    for (const [system, comp] of variants) {
      const c = comp ? compressions[comp]! : null
      const body = c ? c.compress(raw) : raw
      const rec = {
        scenario: 'cbor-size',
        kind: 'result' as const,
        runId,
        ts: new Date().toISOString(),
        gitSha: gitSha(),
        node: process.version,
        host: hostInfo('-'),
        system,
        params: { dataset, items: n, devices },
        bytes: body.length,
        bytesPerReading: Number((body.length / n).toFixed(2)),
        encodeUsPerReading: Number(usPerReading(() => c ? c.compress(fmt.encode(env, items)) : fmt.encode(env, items)).toFixed(3)),
        decodeUsPerReading: Number(usPerReading(() => fmt.decode(c ? c.decompress(body) : body)).toFixed(3)),
        command: commandLine(['node', '--import', 'tsx', 'bench/cbor-size.ts', ...process.argv.slice(2)])
      }
      rows.push(`${dataset.padEnd(6)} ${system.padEnd(20)} ${String(rec.bytesPerReading).padStart(8)} B/reading  encode ${rec.encodeUsPerReading.toFixed(2).padStart(6)} us  decode ${rec.decodeUsPerReading.toFixed(2).padStart(6)} us`)
      process.stdout.write(JSON.stringify(rec) + '\n')
      if (f.get('write') !== false) appendRecord('cbor-size.jsonl', rec)
    }
  }
}
// What the gateway pays per batch: it stores each item as v1 bytes at intake, so v1 is
// framing those bytes, and v2 decodes them first (gateway/flush/wire.ts)
for (const [dataset, items] of Object.entries(datasets)) {
  const raws = items.map(encodeItem)
  for (const [system, fn] of [
    ['gateway-v1', () => encodeBatchRaw(env, raws)],
    ['gateway-v2', () => encodeBatchV2(env, raws.map((r) => decodeTrusted(r) as BatchItem))]
  ] as const) {
    const rec = {
      scenario: 'cbor-size', kind: 'result' as const, runId, ts: new Date().toISOString(), gitSha: gitSha(), node: process.version, host: hostInfo('-'),
      system, params: { dataset, items: n, devices }, bytesPerReading: Number((fn().length / n).toFixed(2)),
      encodeUsPerReading: Number(usPerReading(fn).toFixed(3)),
      command: commandLine(['node', '--import', 'tsx', 'bench/cbor-size.ts', ...process.argv.slice(2)])
    }
    rows.push(`${dataset.padEnd(6)} ${system.padEnd(20)} ${String(rec.bytesPerReading).padStart(8)} B/reading  encode ${rec.encodeUsPerReading.toFixed(2).padStart(6)} us (from stored items)`)
    process.stdout.write(JSON.stringify(rec) + '\n')
    if (f.get('write') !== false) appendRecord('cbor-size.jsonl', rec)
  }
}
process.stderr.write(rows.join('\n') + '\n')
