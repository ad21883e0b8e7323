/**
 * Ingest drain throughput: spawns the real CLI (its own process, LevelDB in a temp dir) and
 * posts batches of `--batch` items over `--partitions` parallel partitions (one batch in
 * flight per partition, as a gateway does) for `--seconds`. Prints one JSON line.
 *
 *   node --import tsx test/integration/ingest-load.ts [--seconds 10] [--batch 500] [--partitions 8] [--gzip]
 *
 * Not a *.test.ts: a throughput floor would be flaky on shared machines. bench/ owns the
 * end-to-end scenario; this isolates the ingest.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { gzipSync } from 'node:zlib'
import { decodeResponse, encodeBatch, type BatchItem } from '../../protocol/index.ts'
import { ROOT } from '../helpers/index.ts'

const { values: args } = parseArgs({ options: { seconds: { type: 'string', default: '10' }, batch: { type: 'string', default: '500' }, partitions: { type: 'string', default: '8' }, gzip: { type: 'boolean', default: false } } })
const seconds = Number(args.seconds)
const batchSize = Number(args.batch)
const partitions = Number(args.partitions)

const dir = await mkdtemp(join(tmpdir(), 'ingest-load-'))
const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'ingest/main.ts'), '--port', '0', '--token', 'gw1:s-pad-0123456789', '--data-dir', join(dir, 'db')], { env: { ...process.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] })
const ready = await new Promise<{ port: number }>((resolve, reject) => {
  child.on('exit', (code) => reject(new Error(`ingest exited ${code}`)))
  createInterface({ input: child.stdout! }).on('line', (l) => { try { const o = JSON.parse(l) as { msg?: string, port: number }; if (o.msg === 'ready') resolve(o) } catch {} })
})
const url = `http://127.0.0.1:${ready.port}/v1/batches`
const now = Date.now()
let stored = 0
let requests = 0
const latencies: number[] = []
const deadline = Date.now() + seconds * 1000

async function partitionLoop (p: number): Promise<void> {
  let s = 0
  while (Date.now() < deadline) {
    const items: BatchItem[] = []
    for (let i = 0; i < batchSize; i++, s++) items.push([p, s, `dev-${p}-${s % 50}`, Math.floor(s / 50), 1, now, now + s, { temp: 20 + (s % 10) / 10, hum: 40 + (s % 7), ok: true }])
    let body = encodeBatch({ gateway: 'gw1', epoch: 'ep1', batch: `p${p}-${s}`, floors: [[p, items[0]![1]]], items })
    const headers: Record<string, string> = { 'content-type': 'application/cbor', authorization: 'Bearer s-pad-0123456789' }
    if (args.gzip) { body = gzipSync(body); headers['content-encoding'] = 'gzip' }
    const t0 = performance.now()
    const r = await fetch(url, { method: 'POST', headers, body })
    const res = decodeResponse(new Uint8Array(await r.arrayBuffer()))
    latencies.push(performance.now() - t0)
    requests++
    stored += res.results.filter((x) => x[2] === 0).length
  }
}

const t0 = performance.now()
await Promise.all(Array.from({ length: partitions }, (_, p) => partitionLoop(p)))
const elapsed = (performance.now() - t0) / 1000
latencies.sort((a, b) => a - b)
const pct = (q: number): number => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]! * 10) / 10
console.log(JSON.stringify({ scenario: 'ingest-drain', node: process.version, batch: batchSize, partitions, gzip: args.gzip, seconds: Math.round(elapsed * 10) / 10, requests, stored, itemsPerSec: Math.round(stored / elapsed), p50Ms: pct(0.5), p99Ms: pct(0.99) }))
child.kill('SIGTERM')
await new Promise((r) => child.once('exit', r))
await rm(dir, { recursive: true, force: true })
