/**
 * Results files: `bench/results/{scenario}.jsonl`, one JSON record a line, append-only
 * (see BenchRecord in types.ts). A record names its git commit (with `+dirty` when the
 * tree under test had uncommitted changes), node version, host and the exact command.
 */
import { spawnSync } from 'node:child_process'
import { appendFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { cpus, release, type } from 'node:os'
import { join, resolve } from 'node:path'
import type { BenchRecord } from './types.ts'

export const RESULTS_DIR = resolve(import.meta.dirname, '..', 'results')
const ROOT = resolve(import.meta.dirname, '..', '..')

export function gitSha (): string {
  const sha = spawnSync('git', ['rev-parse', '--short=10', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() || 'unknown'
  const dirty = spawnSync('git', ['status', '--porcelain', '--untracked-files=all', '--', 'gateway', 'protocol', 'bench/loadgen.ts', 'bench/lib'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() !== ''
  return dirty ? `${sha}+dirty` : sha
}

export function hostInfo (pinned: string): BenchRecord['host'] {
  const c = cpus()
  return { cpus: c[0]?.model.trim() ?? 'unknown', ncpu: c.length, os: `${type()} ${release()}`, pinned }
}

export function appendRecord (file: string, rec: BenchRecord): void {
  mkdirSync(RESULTS_DIR, { recursive: true })
  appendFileSync(join(RESULTS_DIR, file), JSON.stringify(rec) + '\n')
}

/** Every record of every results file; malformed lines are reported, not fatal. */
export function readAllRecords (dir = RESULTS_DIR): { records: BenchRecord[], problems: string[] } {
  const records: BenchRecord[] = []
  const problems: string[] = []
  let files: string[] = []
  try { files = readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort() } catch { return { records, problems } }
  for (const f of files) {
    const lines = readFileSync(join(dir, f), 'utf8').split('\n')
    lines.forEach((line, i) => {
      if (line.trim() === '') return
      try {
        const r = normalize(JSON.parse(line) as Record<string, unknown>)
        if (typeof r.scenario !== 'string' || typeof r.ts !== 'string') throw new Error('no scenario (or bench) and ts (or time) fields')
        records.push(r)
      } catch (err) { problems.push(`${f}:${i + 1}: ${(err as Error).message}`) }
    })
  }
  return { records, problems }
}

/**
 * Maps the common alternative spellings of other scenario scripts onto BenchRecord:
 * bench -> scenario, time -> ts, sha -> gitSha, broker -> system, ackedRate -> msgsPerSec,
 * latency objects (pubackMs, latency) -> p50Ms/p99Ms/p999Ms, rssMiB -> peakRssMb.
 */
function normalize (o: Record<string, unknown>): BenchRecord {
  const r = { ...o } as Record<string, unknown>
  const pick = (to: string, ...from: string[]): void => {
    if (r[to] !== undefined) return
    for (const k of from) if (r[k] !== undefined) { r[to] = r[k]; return }
  }
  pick('scenario', 'bench')
  pick('ts', 'time', 'date')
  pick('gitSha', 'sha', 'git')
  pick('system', 'broker', 'sut')
  pick('msgsPerSec', 'ackedRate', 'rate')
  pick('peakRssMb', 'rssMiB', 'rssMb')
  for (const k of ['pubackMs', 'latency', 'latencyMs']) {
    const l = r[k] as Record<string, unknown> | undefined
    if (l && typeof l === 'object') { r.p50Ms ??= l.p50Ms ?? l.p50; r.p99Ms ??= l.p99Ms ?? l.p99; r.p999Ms ??= l.p999Ms ?? l.p999 }
  }
  r.system ??= '-'
  r.params ??= {}
  r.command ??= '(command not recorded)'
  r.runId ??= `${String(r.gitSha ?? '?')} ${String(r.command)}`
  return r as BenchRecord
}

/** Plain-text or Markdown table; numbers right-aligned. */
export function table (head: string[], rows: string[][], markdown: boolean): string {
  const numeric = head.map((_, c) => rows.length > 0 && rows.every((r) => /^[-+]?[\d.,]+[x%]?$|^-$|^n\/a$/.test(r[c] ?? '')))
  if (markdown) {
    const esc = (s: string): string => s.replace(/\|/g, '\\|')
    return [
      `| ${head.map(esc).join(' | ')} |`,
      `| ${head.map((_, c) => numeric[c] ? '---:' : '---').join(' | ')} |`,
      ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)
    ].join('\n')
  }
  const w = head.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)))
  const fmt = (r: string[]): string => r.map((s, c) => numeric[c] ? s.padStart(w[c]!) : s.padEnd(w[c]!)).join('  ').trimEnd()
  return [fmt(head), w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(fmt)].join('\n')
}

export const fmtInt = (n: number | undefined | null): string => n === undefined || n === null ? '-' : Math.round(n).toLocaleString('en-US')
export const fmtMs = (n: number | undefined | null): string => n === undefined || n === null ? '-' : n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0)
export const fmtRatio = (n: number | undefined | null): string => n === undefined || n === null || !Number.isFinite(n) ? '-' : `${n.toFixed(2)}x`
