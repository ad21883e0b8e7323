/**
 * Wire size of an upstream batch (issue 3): the same 500 realistic readings as protocol v1
 * CBOR and as the equivalent JSON, raw and gzipped. Pure computation, no processes.
 *
 *   node --import tsx bench/cbor-size.ts [--items 500] [--devices 100]
 */
import { gzipSync } from 'node:zlib'
import { encodeBatch, type BatchItem } from '../protocol/index.ts'
import { helpText, num, parseFlags, type FlagSpec } from './lib/args.ts'
import { appendRecord, gitSha, hostInfo } from './lib/results.ts'
import { commandLine } from './lib/systems.ts'

const FLAGS: FlagSpec = {
  items: { type: 'number', default: 500, doc: 'items in the batch (batchMaxItems)' },
  devices: { type: 'number', default: 100, doc: 'devices the items come from' },
  write: { type: 'bool', default: true, doc: 'append to bench/results/cbor-size.jsonl' }
}

const f = parseFlags(process.argv.slice(2), FLAGS)
if (f.get('help')) { process.stdout.write(helpText(FLAGS) + '\n'); process.exit(0) }
const n = num(f, 'items')
const devices = num(f, 'devices')

// deterministic, realistic values: what device-sim's sensor models send
let x = 12345
const rnd = (): number => { x = (x * 1103515245 + 12345) % 2 ** 31; return x / 2 ** 31 }
const round = (v: number, d: number): number => Math.round(v * 10 ** d) / 10 ** d
const boot = 1_795_750_000_000
const t0 = 1_795_759_000_000
const items: BatchItem[] = []
for (let i = 0; i < n; i++) {
  const d = i % devices
  const seq = 1000 + Math.floor(i / devices)
  const temp = round(18 + 6 * Math.sin(i / 50) + rnd(), 2)
  items.push([3, 250_000 + i, `sim-${String(d).padStart(4, '0')}`, seq, boot, t0 + i * 10, t0 + i * 10 + 7, {
    temperature_c: temp,
    humidity_pct: round(70 - temp + rnd() * 3, 1),
    pressure_hpa: round(1013 + rnd() * 4 - 2, 1),
    battery_pct: round(97 - i / 1000, 2),
    door_open: rnd() < 0.1,
    motion: rnd() < 0.05
  }])
}
const env = { gateway: 'gw-0001', epoch: 'XVrYgH5_6rtHZXPa', batch: '9f3a2c7d1e5b4a60', floors: [[3, 250_000]] as [number, number][] }
const cbor = encodeBatch({ ...env, items })
const json = Buffer.from(JSON.stringify({ v: 1, ...env, items }))
const rec = {
  scenario: 'cbor-size',
  kind: 'result' as const,
  runId: new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + '-' + process.pid,
  ts: new Date().toISOString(),
  gitSha: gitSha(),
  node: process.version,
  host: hostInfo('-'),
  system: 'protocol-v1',
  params: { items: n, devices },
  cborBytes: cbor.length,
  jsonBytes: json.length,
  ratio: Number((cbor.length / json.length).toFixed(3)),
  cborGzipBytes: gzipSync(cbor).length,
  jsonGzipBytes: gzipSync(json).length,
  bytesPerItemCbor: Number((cbor.length / n).toFixed(1)),
  command: commandLine(['node', '--import', 'tsx', 'bench/cbor-size.ts', ...process.argv.slice(2)])
}
process.stdout.write(JSON.stringify(rec) + '\n')
process.stderr.write(`CBOR ${cbor.length} B vs JSON ${json.length} B: ${(100 * rec.ratio).toFixed(1)}% (target <= 60%: ${rec.ratio <= 0.6 ? 'PASS' : 'MISS'}); gzipped ${rec.cborGzipBytes} vs ${rec.jsonGzipBytes} B\n`)
if (f.get('write') !== false) appendRecord('cbor-size.jsonl', rec)
