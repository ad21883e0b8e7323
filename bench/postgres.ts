/**
 * The postgres sink against PostgreSQL's own limit and against the leveldb sink:
 *
 *   node --import tsx bench/postgres.ts [--rows 100000] [--rounds 3] [--batch 500] [--concurrency 8] [--e2e-rate 20000] [--e2e-s 10]
 *
 * 1. Ingest vs COPY, same rows, same table and indexes, each on a fresh database of one
 *    throwaway PostgreSQL (fsync and synchronous_commit on), `--rounds` times:
 *    - `copy`: the rows as a CSV file, loaded with one server-side `COPY readings FROM`;
 *    - `ingest-1`, `ingest-2`: the same rows as upstream v1 batches (CBOR, `--batch` items)
 *      POSTed with `--concurrency` requests in flight to 1 ingest CLI, or spread over 2, with
 *      --sink postgres. Rate = rows / wall time from first request to last answer.
 *    Each round's ingest rates are divided by that round's COPY rate and the median ratio
 *    is reported (on a shared box the rates drift more between rounds than within one).
 *    Beside each rate, the CPU seconds the server (postmaster and its children) and the
 *    ingest processes spent on it: less sensitive to other load than the rates.
 * 2. End to end: loadgen (open loop, `--e2e-rate` for `--e2e-s`) -> gateway -> ingest with
 *    the leveldb sink, then the same with the postgres sink; rate = readings acknowledged
 *    to the devices / time from the first publish until the ingest stored them all.
 * Goals: ingest >= 80% of COPY; e2e with postgres >= 80% of leveldb. Appends records to
 * bench/results/postgres.jsonl (then `npm run bench:results`).
 */
import { chownSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { encodeBatch, type BatchItem } from '../protocol/index.ts'
import { ThrowawayPostgres } from '../scripts/throwaway-postgres.ts'
import { bool, helpText, num, parseFlags, str, type FlagSpec } from './lib/args.ts'
import { Cleanup, cpuSeconds, type Proc } from './lib/procs.ts'
import { appendRecord, fmtInt, gitSha, hostInfo } from './lib/results.ts'
import { commandLine, ROOT } from './lib/systems.ts'
import type { BenchRecord, Check } from './lib/types.ts'

/** The fleet of a gateway the ingest's tokens give none (the ingest's DEFAULT_FLEET; bench/ imports no ingest module) */
const DEFAULT_FLEET = 'default'

const FLAGS: FlagSpec = {
  rows: { type: 'number', default: 100_000, doc: 'rows for the ingest vs COPY runs' },
  rounds: { type: 'number', default: 3, doc: 'rounds of COPY, ingest x1, ingest x2 (the ratios are medians of per-round ratios)' },
  batch: { type: 'number', default: 500, doc: 'items per upstream batch (the gateway default)' },
  concurrency: { type: 'number', default: 8, doc: 'batches in flight (the gateway default --max-in-flight)' },
  devices: { type: 'number', default: 500, doc: 'devices the rows belong to' },
  'e2e-rate': { type: 'number', default: 20_000, doc: 'offered readings/s in the end-to-end runs (0 skips them)' },
  'e2e-s': { type: 'number', default: 10, doc: 'measured window of each end-to-end run' },
  store: { type: 'bool', default: true, doc: 'run the ingest vs COPY part (--no-store: only end to end)' },
  write: { type: 'bool', default: true, doc: 'append to bench/results/postgres.jsonl' },
  echo: { type: 'bool', default: false, doc: 'echo child output' },
  'cpu-prof': { type: 'string', default: '', doc: 'write a CPU profile of every ingest process into this directory (node --cpu-prof)' }
}

const TOKEN = 'bench-secret-pad'
const PARTITIONS = 8
const quiet = { ...process.env, LOG_LEVEL: 'error' }
const nodeArgs: string[] = []
const node = (script: string, args: string[]): string[] => [process.execPath, ...nodeArgs, '--import', 'tsx', join(ROOT, script), ...args]

/** The rows, as batches of upstream protocol v1 (partition = device mod 8, like the gateway's hash). */
function makeBatches (rows: number, batchSize: number, devices: number): { items: BatchItem[], bodies: Buffer[] } {
  const items: BatchItem[] = []
  const nextS = new Array<number>(PARTITIONS).fill(1)
  const t0 = Date.UTC(2026, 0, 1)
  for (let i = 0; i < rows; i++) {
    const d = i % devices
    const p = d % PARTITIONS
    const seq = Math.floor(i / devices) + 1
    items.push([p, nextS[p]!++, `dev-${d}`, seq, 1, t0 + i, t0 + i + 3, { temperature: 20 + (i % 100) / 10, humidity: 40 + (i % 7), battery: 3.7 }])
  }
  // one partition per batch, in seq order, as a gateway sends them
  const bodies: Buffer[] = []
  for (let p = 0; p < PARTITIONS; p++) {
    const mine = items.filter((it) => it[0] === p)
    for (let i = 0; i < mine.length; i += batchSize) {
      const part = mine.slice(i, i + batchSize)
      // floor 1: batches of a partition may arrive out of order here (the gateway sends them
      // one at a time), so no batch may claim the earlier ones were acknowledged
      bodies.push(encodeBatch({ gateway: 'bench', epoch: 'e1', batch: `b${p}-${i}`, floors: [[p, 1]], items: part }))
    }
  }
  // interleave partitions, as the gateway's parallel flushers do
  bodies.sort((a, b) => (bodies.indexOf(a) % 37) - (bodies.indexOf(b) % 37))
  return { items, bodies }
}

/** Same encoding as the sink's boot_key (ingest/sinks/leveldb-keys.ts bootKey). */
const bootKey = (boot: number | string | null): string => boot === null ? '0' : typeof boot === 'number' ? '1' + boot.toString(16).padStart(14, '0') : '2' + Buffer.from(boot).toString('hex')
const csvText = (s: string): string => `"${s.replace(/"/g, '""')}"`

function writeCsv (file: string, items: BatchItem[]): void {
  const lines = items.map(([p, s, device, seq, boot, ts, rx, values]) => [
    new Date(ts ?? rx).toISOString(), rx, ts ?? '', 'bench', 'e1', p, s, device, boot === null ? '' : csvText(JSON.stringify(boot)), seq ?? '', csvText(JSON.stringify(values)), bootKey(boot), DEFAULT_FLEET
  ].join(','))
  writeFileSync(file, lines.join('\n') + '\n')
}

async function startIngest (cleanup: Cleanup, args: string[], echo: boolean): Promise<{ proc: Proc, url: string }> {
  const proc = cleanup.spawn('ingest', node('ingest/main.ts', ['--port', '0', '--token', `bench:${TOKEN}`, ...args]), { cwd: ROOT, env: quiet, echo })
  const ready = await proc.waitFor((o) => o.msg === 'ready', 60_000, 'ingest ready')
  return { proc, url: `http://127.0.0.1:${String(ready.port)}` }
}

async function post (url: string, body: Buffer): Promise<void> {
  for (;;) {
    const res = await fetch(`${url}/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/cbor', authorization: `Bearer ${TOKEN}` }, body })
    await res.arrayBuffer()
    if (res.status === 200) return
    if (res.status !== 503) throw new Error(`ingest answered ${res.status}`)
  }
}

/** POSTs every body, `concurrency` in flight, batch i to urls[i mod n]; returns rows/s. */
async function drive (urls: string[], bodies: Buffer[], rows: number, concurrency: number): Promise<number> {
  let next = 0
  const t0 = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < bodies.length) { const i = next++; await post(urls[i % urls.length]!, bodies[i]!) }
  }))
  return rows / ((performance.now() - t0) / 1000)
}

/** CPU seconds of the PostgreSQL server: the postmaster, its exited children (cutime, cstime) and its live ones. */
function serverCpuSeconds (postmaster: number | undefined): number {
  if (postmaster === undefined) return 0
  let ticks = 0
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const s = readFileSync(`/proc/${d}/stat`, 'latin1')
      const fields = s.slice(s.lastIndexOf(')') + 2).split(' ') // from #3 (state): ppid is [1], utime [11], stime [12], cutime [13], cstime [14]
      if (Number(d) === postmaster) ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])
      else if (Number(fields[1]) === postmaster) ticks += Number(fields[11]) + Number(fields[12])
    } catch { /* gone meanwhile */ }
  }
  return ticks / 100 // USER_HZ
}

const cpuSecondsOf = (pid: number): number => cpuSeconds(pid) ?? 0

async function countRows (url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try { return Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM readings')).rows[0]!.n) } finally { await c.end() }
}

type E2e = { perSec: number, acked: number, elapsedS: number }

async function e2e (cleanup: Cleanup, sinkArgs: string[], rate: number, durationS: number, echo: boolean, tag: string): Promise<E2e> {
  const dir = cleanup.tempDir('bench-pg-e2e-')
  const ingest = await startIngest(cleanup, ['--data-dir', join(dir, 'ingest'), ...sinkArgs], echo)
  const gw = cleanup.spawn('gateway', node('gateway/main.ts', ['--gateway-id', 'bench', '--data-dir', join(dir, 'gw'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0',
    '--upstream', ingest.url, '--token', TOKEN, '--no-receipts']), { cwd: ROOT, env: quiet, echo })
  const ready = await gw.waitFor((o) => o.msg === 'ready', 60_000, 'gateway ready')
  const stored = async (): Promise<number> => ((await (await fetch(`${ingest.url}/v1/stats`)).json()) as { stored: number }).stored
  const lg = cleanup.spawn('loadgen', node('bench/loadgen.ts', ['--port', String(ready.mqttPort), '--connections', '200', '--rate', String(rate),
    '--duration-s', String(durationS), '--warmup-s', '1', '--id-prefix', `${tag}-`]), { cwd: ROOT, echo })
  // Rate = readings acknowledged by the gateway / time from the first publish until the
  // ingest stored all of them: robust to the gateway's start-up and to the window edges.
  let t0: number | null = null
  lg.onLine((_l, o) => { if (o?.type === 'phase' && o.phase === 'warmup' && t0 === null) t0 = performance.now() })
  const res = await lg.waitFor((o) => o.type === 'result', (durationS + 120) * 1000, 'loadgen result')
  const acked = res.acked as number
  const deadline = Date.now() + 300_000
  while (await stored() < acked) {
    if (Date.now() > deadline) throw new Error(`${tag}: the ingest did not store ${acked} readings within 300 s`)
    await new Promise((r) => setTimeout(r, 100))
  }
  if (t0 === null) throw new Error(`${tag}: loadgen printed no warmup phase line`)
  const elapsedS = (performance.now() - t0) / 1000
  await gw.stop()
  await ingest.proc.stop()
  return { perSec: acked / elapsedS, acked, elapsedS: Number(elapsedS.toFixed(2)) }
}

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(helpText(FLAGS) + '\n'); return }
  const echo = bool(f, 'echo')
  const rows = num(f, 'rows')
  const prof = str(f, 'cpu-prof')
  if (prof !== undefined && prof !== '') nodeArgs.push('--cpu-prof', '--cpu-prof-dir', prof)
  const concurrency = num(f, 'concurrency')
  const cleanup = new Cleanup()
  const srv = await ThrowawayPostgres.start()
  const runId = new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + '-' + process.pid
  const command = commandLine(['node', '--import', 'tsx', 'bench/postgres.ts', ...process.argv.slice(2)])
  const base = { scenario: 'postgres', kind: 'result' as const, runId, gitSha: gitSha(), node: process.version, host: hostInfo('not pinned'), command }
  const records: BenchRecord[] = []
  const record = (system: string, params: BenchRecord['params'], extra: Record<string, unknown>): void => {
    const r = { ...base, ts: new Date().toISOString(), system, params, ...extra } as BenchRecord
    records.push(r)
    process.stdout.write(JSON.stringify(r) + '\n')
    if (bool(f, 'write')) appendRecord('postgres.jsonl', r)
  }
  const say = (s: string): void => { process.stderr.write(s + '\n') }
  try {
    const { items, bodies } = makeBatches(rows, num(f, 'batch'), num(f, 'devices'))
    const params = { row: 'store', rows, batch: num(f, 'batch'), concurrency }

    // Schema: let an ingest create it on a template database, then clone it per run.
    const tmpl = await srv.createDatabase('bench_template')
    const first = await startIngest(cleanup, ['--sink', 'postgres', '--postgres-url', tmpl], echo)
    await first.proc.stop()
    const fresh = async (name: string): Promise<string> => {
      const c = new pg.Client({ connectionString: srv.url() })
      await c.connect()
      try { await c.query(`CREATE DATABASE ${name} TEMPLATE bench_template`) } finally { await c.end() }
      return srv.url(name)
    }

    const checks: Check[] = []
    if (bool(f, 'store')) {
      // COPY baseline: server-side COPY from a CSV file the postgres user can read.
      const dir = cleanup.tempDir('bench-pg-')
      const csv = join(dir, 'rows.csv')
      writeCsv(csv, items)
      const st = statSync(srv.dataDir)
      chownSync(dir, st.uid, st.gid); chownSync(csv, st.uid, st.gid)
      const rounds = num(f, 'rounds')
      // Per round: COPY, then 1 and 2 ingest processes, each on a fresh database, so each
      // ratio compares runs seconds apart (the box is shared: rates drift between rounds).
      const perRound: Record<string, number>[] = []
      const cpu: Record<string, { server: number, ingest: number }[]> = { copy: [], 'ingest-1': [], 'ingest-2': [] }
      for (let r = 0; r < rounds; r++) {
        const copyUrl = await fresh(`bench_copy_${r}`)
        const cc = new pg.Client({ connectionString: copyUrl })
        cc.on('error', () => {}) // the server stopped in `finally` after a failed COPY: the query's own rejection reports it
        await cc.connect()
        const s0 = serverCpuSeconds(srv.pid)
        const c0 = performance.now()
        await cc.query(`COPY readings (time, rx, ts, gateway, epoch, p, s, device, boot, seq, values, boot_key, fleet) FROM '${csv}' WITH (FORMAT csv)`)
        const copyRate = rows / ((performance.now() - c0) / 1000)
        cpu.copy!.push({ server: serverCpuSeconds(srv.pid) - s0, ingest: 0 })
        await cc.end()
        const rates: Record<string, number> = { copy: copyRate }
        for (const n of [1, 2]) {
          const url = await fresh(`bench_ingest${n}_${r}`)
          const procs = await Promise.all(Array.from({ length: n }, () => startIngest(cleanup, ['--sink', 'postgres', '--postgres-url', url], echo)))
          const i0 = procs.map((p) => cpuSecondsOf(p.proc.pid))
          const s1 = serverCpuSeconds(srv.pid)
          rates[`ingest-${n}`] = await drive(procs.map((p) => p.url), bodies, rows, concurrency)
          cpu[`ingest-${n}`]!.push({ server: serverCpuSeconds(srv.pid) - s1, ingest: procs.reduce((a, p, i) => a + cpuSecondsOf(p.proc.pid) - i0[i]!, 0) })
          for (const p of procs) await p.proc.stop()
          const stored = await countRows(url)
          if (stored !== rows) throw new Error(`ingest-${n} stored ${stored} rows, expected ${rows}`)
        }
        perRound.push(rates)
        const c = (k: string): string => { const x = cpu[k]![r]!; return `cpu ${(x.server + x.ingest).toFixed(2)} s (server ${x.server.toFixed(2)}, ingest ${x.ingest.toFixed(2)})` }
        say(`round ${r + 1}/${rounds} (load ${loadavg().map((l) => l.toFixed(1)).join(' ')}): COPY ${fmtInt(copyRate)} rows/s ${c('copy')}; ` +
          [1, 2].map((n) => `ingest x${n} ${fmtInt(rates[`ingest-${n}`]!)} rows/s = ${(100 * rates[`ingest-${n}`]! / copyRate).toFixed(0)}% of COPY ${c(`ingest-${n}`)}`).join('; '))
      }
      const median = (xs: number[]): number => { const a = [...xs].sort((x, y) => x - y); return a.length % 2 === 1 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2 }
      const ratio = (k: string): number => median(perRound.map((x) => x[k]! / x.copy!))
      const cpuOf = (k: string): { serverCpuS: number, ingestCpuS: number } => ({ serverCpuS: Number(median(cpu[k]!.map((x) => x.server)).toFixed(2)), ingestCpuS: Number(median(cpu[k]!.map((x) => x.ingest)).toFixed(2)) })
      const copyRate = median(perRound.map((x) => x.copy!))
      say(`COPY: ${fmtInt(copyRate)} rows/s (median of ${rounds})`)
      record('copy', params, { msgsPerSec: Math.round(copyRate), ...cpuOf('copy') })
      for (const n of [1, 2]) {
        const rate = median(perRound.map((x) => x[`ingest-${n}`]!))
        say(`ingest x${n} (postgres sink): ${fmtInt(rate)} rows/s; median ratio to the same round's COPY ${(100 * ratio(`ingest-${n}`)).toFixed(0)}%`)
        record(`ingest-${n}`, params, { msgsPerSec: Math.round(rate), baseline: 'copy', ratio: Number(ratio(`ingest-${n}`).toFixed(3)), ...cpuOf(`ingest-${n}`) })
      }

      checks.push(
        { name: 'ingest (1 process) vs COPY', target: '>= 80%', value: `${(100 * ratio('ingest-1')).toFixed(0)}%`, pass: ratio('ingest-1') >= 0.8 },
        { name: 'ingest (2 processes) vs COPY', target: '>= 80%', value: `${(100 * ratio('ingest-2')).toFixed(0)}%`, pass: ratio('ingest-2') >= 0.8 }
      )
    }

    const e2eRate = num(f, 'e2e-rate')
    if (e2eRate > 0) {
      const durationS = num(f, 'e2e-s')
      const p2 = { row: 'e2e', rate: e2eRate, durationS }
      const l = await e2e(cleanup, [], e2eRate, durationS, echo, 'lv')
      const lv = l.perSec
      say(`e2e leveldb sink: ${fmtInt(lv)} stored/s (${l.acked} readings in ${l.elapsedS} s)`)
      record('e2e-leveldb', p2, { msgsPerSec: Math.round(lv), storedPerSec: Math.round(lv), acked: l.acked, elapsedS: l.elapsedS })
      const pgUrl = await fresh('bench_e2e')
      const g = await e2e(cleanup, ['--sink', 'postgres', '--postgres-url', pgUrl], e2eRate, durationS, echo, 'pg')
      const pr = g.perSec
      say(`e2e postgres sink: ${fmtInt(pr)} stored/s (${g.acked} readings in ${g.elapsedS} s) = ${(100 * pr / lv).toFixed(0)}% of leveldb`)
      record('e2e-postgres', p2, { msgsPerSec: Math.round(pr), storedPerSec: Math.round(pr), acked: g.acked, elapsedS: g.elapsedS, baseline: 'e2e-leveldb' })
      checks.push({ name: `end to end at ${fmtInt(e2eRate)}/s offered: postgres sink vs leveldb sink`, target: '>= 80%', value: `${(100 * pr / lv).toFixed(0)}%`, pass: pr >= 0.8 * lv })
    }
    const rec = { ...base, kind: 'checks' as const, ts: new Date().toISOString(), system: '-', params: {}, checks } as BenchRecord
    if (bool(f, 'write')) appendRecord('postgres.jsonl', rec)
    for (const c of checks) say(`${c.pass ? 'PASS' : 'MISS'} ${c.name}: ${c.value} (target ${c.target})`)
  } finally {
    cleanup.killAll()
    await srv.stop()
  }
}

main().catch((err: Error) => { process.stderr.write(`postgres bench failed: ${err.stack ?? err.message}\n`); process.exit(1) })
