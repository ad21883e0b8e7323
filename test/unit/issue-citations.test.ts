/**
 * Comments and docs give reasons in words: a number of a tracker that is not part of the
 * repository tells a reader nothing (which failure the code guards, why it matters). This
 * check fails on any tracked file that cites one, naming the file, the line and the text.
 * bench/results/*.jsonl is data (runs record what they were started for) and is not read.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../helpers/index.ts'

/** Files that may cite one. Keep it empty: write the reason instead. */
export const ALLOWED: readonly string[] = []

/**
 * Files in folders other work was changing while the rest of the repository was cleaned;
 * their citations go once that work has merged, and then this list is emptied. A file on it
 * that no longer cites a number makes the test fail until it is taken off, so the list only
 * shrinks. docs/metrics.md is generated: its citation is a help text in gateway/broker/.
 */
export const ISSUE_CITATIONS_REMAINDER: readonly string[] = [
  'docs/faults.md',
  'docs/metrics.md',
  'gateway/admin/auth.ts',
  'gateway/broker/acl.ts',
  'gateway/broker/auth.ts',
  'gateway/broker/guard.ts',
  'gateway/broker/hook-guard.ts',
  'gateway/broker/index.ts',
  'gateway/broker/limit-deliveries.ts',
  'gateway/broker/limit-hooks.ts',
  'gateway/broker/limit-metrics.ts',
  'gateway/broker/limit-offenders.ts',
  'gateway/broker/limit-rate.ts',
  'gateway/broker/limit-rules.ts',
  'gateway/broker/limits-config.ts',
  'gateway/broker/limits.ts',
  'gateway/broker/listeners.ts',
  'gateway/broker/login-guard.ts',
  'gateway/broker/persistence.ts',
  'gateway/broker/reading-routes.ts',
  'gateway/broker/security.ts',
  'gateway/cli/passwd.ts',
  'gateway/config.ts',
  'gateway/dlq/render.ts',
  'gateway/intake/formats.ts',
  'gateway/intake/implicit-boot.ts',
  'gateway/intake/index.ts',
  'gateway/listen.ts',
  'gateway/main.ts',
  'gateway/mapping/publisher.ts',
  'gateway/metrics/hot-histogram.ts',
  'gateway/metrics/index.ts',
  'gateway/store/dedup-bound.ts',
  'gateway/store/open-error.ts',
  'gateway/store/writer.ts',
  'ingest/auth-backoff.ts',
  'ingest/bounds.ts',
  'ingest/item.ts',
  'ingest/page/index.ts',
  'ingest/page/recent.ts',
  'ingest/query.ts',
  'ingest/read-auth.ts',
  'ingest/server.ts',
  'ingest/sinks/leveldb-epochs.ts',
]

const NOT_READ = /^bench\/results\/.*\.jsonl$/
const CITATION = /\bissues? #?\d+/i

/** `line: text` for each line of a text that cites an issue number. */
export function citations (text: string): string[] {
  const out: string[] = []
  text.split('\n').forEach((line, i) => { if (CITATION.test(line)) out.push(`${i + 1}: ${line.trim().slice(0, 160)}`) })
  return out
}

function trackedTextFiles (): string[] {
  return execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .split('\0').filter((f) => f !== '' && !NOT_READ.test(f)).sort()
}

test('no tracked file cites an issue number of the tracker (write the reason in words)', () => {
  const files = trackedTextFiles()
  assert.ok(files.includes('README.md') && files.length > 200, `the listing found ${files.length} files`)
  const fresh: string[] = []
  const citing = new Set<string>()
  for (const f of files) {
    let text: string
    try { text = readFileSync(join(ROOT, f), 'utf8') } catch { continue } // a file deleted in the work tree
    if (text.includes('\0')) continue // binary (screenshots)
    const found = citations(text)
    if (found.length === 0) continue
    citing.add(f)
    if (!ALLOWED.includes(f) && !ISSUE_CITATIONS_REMAINDER.includes(f)) for (const c of found) fresh.push(`${f}:${c}`)
  }
  assert.deepEqual(fresh, [], 'these lines cite an issue number; say what failure the code guards and why it matters, or link a doc section:\n' + fresh.join('\n'))
  const done = ISSUE_CITATIONS_REMAINDER.filter((f) => !citing.has(f))
  assert.deepEqual(done, [], 'these files cite no issue number any more: take them off ISSUE_CITATIONS_REMAINDER')
})

test('the check finds a bare number, a #number with an item, and the plural; not a longer word or an issue without a number', () => {
  const n = (k: number): string => String(k) // built here, so this file cites nothing itself
  assert.deepEqual(citations(`a\n// guard (iss${'ue'} ${n(9)})\n * Iss${'ue'} #${n(19)} item 7: x\nsee iss${'ues'} ${n(3)}`).map((l) => l.split(':')[0]), ['2', '3', '4'])
  assert.deepEqual(citations(`tissue ${n(3)}\nan issue with 3 parts\nissue-${n(5)}`), [])
})
