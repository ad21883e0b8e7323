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
 * Files allowed to cite a number for now: none. Kept so a large change can list files it
 * cleans later; a file on it that no longer cites a number makes the test fail until it is
 * taken off, so the list only shrinks. (docs/metrics.md is generated from help texts.)
 */
export const ISSUE_CITATIONS_REMAINDER: readonly string[] = []

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
