/**
 * Regenerates bench/RESULTS.md from every bench/results/*.jsonl file:
 *
 *   node --import tsx bench/update-results.ts [--check]
 *
 * One table per `scenario`; in it, the latest record per (system, params). A record that
 * names a `baseline` system gets a ratio column: its msgs/s over the baseline's for the same
 * params, from the same run when that run measured the baseline. Columns appear only when
 * some record of the scenario has the metric, so scenarios (intake, e2e, drain,
 * sim-capacity...) report what they measure. Each run is listed with its date, commit,
 * node, host and the exact command; `checks` records (targets) are listed per scenario.
 * Notes in bench/notes/*.md are appended verbatim.
 * `--check` exits 1 if RESULTS.md is not up to date (for CI) instead of writing it.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fmtInt, fmtMs, fmtRatio, readAllRecords, RESULTS_DIR, table } from './lib/results.ts'
import type { BenchRecord, Check } from './lib/types.ts'

const OUT = join(RESULTS_DIR, '..', 'RESULTS.md')

type Column = { head: string, get: (r: BenchRecord, ctx: Ctx) => string | null }
type Ctx = { ratio: (r: BenchRecord) => number | null, cpuRatio: (r: BenchRecord) => number | null, runRef: (r: BenchRecord) => string, label: (r: BenchRecord) => string }

const numOrNull = (v: unknown): number | null => typeof v === 'number' && Number.isFinite(v) ? v : null
const metric = (key: string, head: string, fmt: (n: number) => string): Column => ({
  head,
  get: (r) => { const v = numOrNull(r[key]); return v === null ? null : fmt(v) }
})

/** An e2e per-process figure: `{ gateway, ingest, loadgen }` as "a/b/c". */
function triple (v: unknown, fmt: (n: number) => string): string | null {
  if (v === null || typeof v !== 'object') return null
  const o = v as Record<string, unknown>
  const xs = [o.gateway, o.ingest, o.loadgen].map(numOrNull)
  return xs.some((x) => x === null) ? null : xs.map((x) => fmt(x!)).join('/')
}

const COLUMNS: Column[] = [
  metric('msgsPerSec', 'msgs/s', fmtInt),
  { head: 'x baseline', get: (r, c) => r.baseline ? fmtRatio(c.ratio(r)) : null },
  metric('p50Ms', 'p50 ms', fmtMs),
  metric('p99Ms', 'p99 ms', fmtMs),
  metric('p999Ms', 'p999 ms', fmtMs),
  metric('idleRssMb', 'idle RSS MB', (n) => n.toFixed(1)),
  metric('peakRssMb', 'peak RSS MB', (n) => n.toFixed(1)),
  metric('brokerCpuPct', 'system CPU %', (n) => n.toFixed(0)),
  metric('cpuUsPerMsg', 'CPU us/msg', (n) => n.toFixed(1)),
  { head: 'x baseline (CPU/msg)', get: (r, c) => r.baseline && numOrNull(r.cpuUsPerMsg) !== null ? fmtRatio(c.cpuRatio(r)) : null },
  metric('loadgenCpuPct', 'load CPU %', (n) => n.toFixed(0)),
  metric('otherCpuPct', 'other CPU %', (n) => n.toFixed(0)),
  metric('errors', 'errors', fmtInt),
  // e2e
  metric('storedPerSec', 'stored upstream/s', fmtInt),
  metric('backlogGrowth', 'backlog growth', fmtInt),
  { head: 'CPU % gateway/ingest/loadgen', get: (r) => triple(r.cpuPct, (n) => n.toFixed(0)) },
  { head: 'CPU us/reading gateway/ingest/loadgen', get: (r) => triple(r.cpuUsPerMsgByProc, (n) => n.toFixed(1)) },
  { head: 'CPU us/uploaded reading gateway/ingest/loadgen', get: (r) => triple(r.cpuUsPerStoredByProc, (n) => n.toFixed(1)) },
  { head: 'load avg (1 min)', get: (r) => Array.isArray(r.loadAvg) && typeof r.loadAvg[0] === 'number' ? (r.loadAvg[0]).toFixed(1) : null },
  { head: 'sustained', get: (r) => typeof r.sustained === 'boolean' ? (r.sustained ? 'yes' : 'no') : null },
  // drain
  metric('drainS', 'drain s', (n) => n.toFixed(1)),
  metric('fillPerSec', 'fill/s', fmtInt),
  { head: 'RSS while draining: first/median/max/last MB', get: (r) => numOrNull(r.drainRssFirstMb) === null ? null : `${String(r.drainRssFirstMb)}/${String(r.drainRssMedianMb)}/${String(r.drainRssMaxMb)}/${String(r.drainRssLastMb)}` },
  // flash
  metric('readings', 'readings', fmtInt),
  metric('procBytesPerReading', 'process B/reading', fmtInt),
  metric('tableBytesPerReading', 'of it tables B/reading', fmtInt),
  metric('amortizedBytesPerReading', 'amortized B/reading', fmtInt),
  metric('devBytesPerReading', 'device B/reading', fmtInt),
  metric('devIdleKBps', 'device idle KB/s', fmtInt),
  // tls
  metric('connectP50Ms', 'connect p50 ms', fmtMs),
  metric('connectP99Ms', 'connect p99 ms', fmtMs),
  metric('cpuMsPerConnect', 'gateway CPU ms/connect', (n) => n.toFixed(2)),
  metric('connectsPerSec', 'connects/s', fmtInt),
  // cbor-size (wire formats)
  metric('bytesPerReading', 'bytes/reading', (n) => n.toFixed(1)),
  metric('encodeUsPerReading', 'encode us/reading', (n) => n.toFixed(2)),
  metric('decodeUsPerReading', 'decode us/reading', (n) => n.toFixed(2)),
  // fuzz (p99 ms above is the well-behaved device's PUBACK latency under the fuzzer)
  metric('connsPerSec', 'fuzz conns/s', fmtInt),
  { head: 'crashed', get: (r) => r.scenario !== 'fuzz' ? null : r.crashed ? `yes: ${String(r.crashed).slice(0, 60)}` : 'no' },
  { head: '/readyz 200', get: (r) => numOrNull(r.readyzTotal) === null ? null : `${String(r.readyzOk)}/${String(r.readyzTotal)}` },
  metric('idleP99Ms', 'p99 ms before fuzzing', fmtMs),
  metric('worstSecondP99Ms', 'worst 1 s p99 ms', fmtMs),
  // admin-cost
  metric('sampleUs', 'sample us/s', (n) => n.toFixed(1)),
  metric('frameUs', 'SSE frame us', (n) => n.toFixed(1)),
  metric('devicesQueryUs', 'devices query us', (n) => n.toFixed(1)),
  metric('viewerCorePct', 'viewer % of a core', (n) => n.toFixed(3))
]

const paramsKey = (p: BenchRecord['params']): string => JSON.stringify(Object.keys(p).sort().map((k) => [k, p[k]]))
const isResult = (r: BenchRecord): boolean => (r.kind ?? 'result') === 'result'

function render (records: BenchRecord[], problems: string[]): string {
  const out: string[] = [
    '# Benchmark results',
    '',
    '<!-- Generated by `node --import tsx bench/update-results.ts` from bench/results/*.jsonl. Do not edit by hand. -->',
    '',
    'Latest run per scenario, system and parameters. These machines are shared and noisy: compare',
    'systems within a run (the ratio column), not absolute numbers across runs. "other CPU %" is time',
    'other processes took on the two benchmark cores during the window; a high value marks a noisy run.',
    ''
  ]
  const scenarios = [...new Set(records.map((r) => r.scenario))]
  for (const scenario of scenarios) {
    const all = records.filter((r) => r.scenario === scenario)
    const results = all.filter(isResult)
    const latest = new Map<string, BenchRecord>()
    for (const r of results) {
      const k = `${r.system}\u0000${paramsKey(r.params)}`
      const prev = latest.get(k)
      if (!prev || prev.ts <= r.ts) latest.set(k, r)
    }
    // Order: parameters as first seen in the file, then systems as first seen.
    const pOrder = [...new Set(results.map((r) => paramsKey(r.params)))]
    const sOrder = [...new Set(results.map((r) => r.system))]
    const shown = [...latest.values()].sort((a, b) =>
      pOrder.indexOf(paramsKey(a.params)) - pOrder.indexOf(paramsKey(b.params)) || sOrder.indexOf(a.system) - sOrder.indexOf(b.system))

    const baselineOf = (r: BenchRecord): BenchRecord | undefined => {
      const same = (b: BenchRecord): boolean => b.system === r.baseline && paramsKey(b.params) === paramsKey(r.params)
      return results.filter((b) => same(b) && b.runId === r.runId).pop() ?? latest.get(`${r.baseline}\u0000${paramsKey(r.params)}`)
    }
    const runs = [...new Set(shown.map((r) => r.runId))].sort((a, b) => firstTs(shown, a).localeCompare(firstTs(shown, b)))
    const ctx: Ctx = {
      ratio: (r) => {
        const base = baselineOf(r)
        const a = numOrNull(r.msgsPerSec)
        const b = base ? numOrNull(base.msgsPerSec) : null
        return a !== null && b ? a / b : null
      },
      cpuRatio: (r) => {
        const base = baselineOf(r)
        const a = numOrNull(r.cpuUsPerMsg)
        const b = base ? numOrNull(base.cpuUsPerMsg) : null
        return a && b !== null ? b / a : null
      },
      runRef: (r) => `r${runs.indexOf(r.runId) + 1}`,
      label: labeler(shown)
    }
    const cols = COLUMNS.filter((c) => shown.some((r) => c.get(r, ctx) !== null))
    out.push(`## ${scenario}`, '')
    if (shown.length > 0) {
      const head = ['params', 'system', ...cols.map((c) => c.head), 'run']
      const rows = shown.map((r) => [ctx.label(r), r.system, ...cols.map((c) => c.get(r, ctx) ?? '-'), ctx.runRef(r)])
      out.push(table(head, rows, true), '')
      const baselines = [...new Set(shown.map((r) => r.baseline).filter((b): b is string => !!b))]
      if (baselines.length) out.push(`"x baseline" = msgs/s over ${baselines.join(', ')} with the same parameters in the same run; "x baseline (CPU/msg)" = ${baselines.join(', ')}'s CPU time per message over this system's, the throughput ratio if each had a whole core (steadier than msgs/s when other jobs share the cores).`, '')
    }

    const checks = all.filter((r) => r.kind === 'checks').sort((a, b) => a.ts.localeCompare(b.ts)).pop()
    if (checks && Array.isArray(checks.checks)) {
      out.push(`### Targets (run ${checks.runId}${runs.includes(checks.runId) ? `, r${runs.indexOf(checks.runId) + 1}` : ''})`, '')
      for (const c of checks.checks as Check[]) out.push(`- **${c.pass === null ? 'N/A' : c.pass ? 'PASS' : 'MISS'}** ${c.name}: ${c.value} (target ${c.target})`)
      out.push('')
    }

    out.push('### Runs', '')
    runs.forEach((id, i) => {
      const r = shown.find((x) => x.runId === id)!
      const host = r.host ? `, ${r.host.ncpu} x ${r.host.cpus}, ${r.host.os}, ${r.host.pinned}` : ''
      out.push(`- **r${i + 1}** \`${id}\`: ${r.ts.slice(0, 19).replace('T', ' ')} UTC, commit ${r.gitSha ?? '?'}, node ${r.node ?? '?'}${host}`)
      out.push('', '  ```sh', `  ${r.command}`, '  ```')
      const sysCmds = new Map<string, string>()
      for (const x of shown.filter((s) => s.runId === id)) {
        if (typeof x.systemCommand === 'string') sysCmds.set(`${x.system}${typeof x.systemVersion === 'string' ? ` (${x.systemVersion})` : ''}`, x.systemCommand)
      }
      if (sysCmds.size) {
        out.push('', '  <details><summary>system commands</summary>', '')
        for (const [s, cmd] of sysCmds) out.push(`  - ${s}: \`${cmd.replace(/`/g, "'")}\``)
        out.push('', '  </details>')
      }
      out.push('')
    })
  }
  for (const note of readNotes()) out.push(note.trimEnd(), '')
  if (problems.length) out.push('## Unreadable lines', '', ...problems.map((p) => `- ${p}`), '')
  if (scenarios.length === 0) out.push('No results yet: run a scenario, e.g. `node --import tsx bench/intake.ts`.', '')
  return out.join('\n')
}

/**
 * bench/notes/*.md, verbatim, in name order: comparisons a change records (e.g. the same
 * bench before and after it), written from records in results/ with their commands.
 */
function readNotes (): string[] {
  const dir = join(RESULTS_DIR, '..', 'notes')
  let names: string[] = []
  try { names = readdirSync(dir).filter((n) => n.endsWith('.md')).sort() } catch { return [] }
  return names.map((n) => readFileSync(join(dir, n), 'utf8'))
}

function firstTs (rs: BenchRecord[], runId: string): string {
  return rs.filter((r) => r.runId === runId).map((r) => r.ts).sort()[0] ?? ''
}

/** `params.row` when it names the parameters, plus any other parameter that differs between records of that row. */
function labeler (rs: BenchRecord[]): (r: BenchRecord) => string {
  const compact = (p: BenchRecord['params'], keys: string[]): string => keys.map((k) => `${k}=${String(p[k])}`).join(' ')
  return (r) => {
    const row = r.params.row
    if (typeof row !== 'string') return compact(r.params, Object.keys(r.params))
    const peers = rs.filter((x) => x.params.row === row)
    const varying = Object.keys(r.params).filter((k) => k !== 'row' && new Set(peers.map((x) => JSON.stringify(x.params[k]))).size > 1)
    return varying.length ? `${row} ${compact(r.params, varying)}` : row
  }
}

const { records, problems } = readAllRecords()
const md = render(records, problems)
if (process.argv.includes('--check')) {
  let current = ''
  try { current = readFileSync(OUT, 'utf8') } catch { /* missing */ }
  if (current !== md) { process.stderr.write('bench/RESULTS.md is out of date: run node --import tsx bench/update-results.ts\n'); process.exit(1) }
} else {
  writeFileSync(OUT, md)
  process.stdout.write(`wrote ${OUT} (${records.length} records${problems.length ? `, ${problems.length} unreadable lines` : ''})\n`)
}
