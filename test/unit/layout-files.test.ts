/**
 * docs/layout.md is the one description of the repository, and a description that checks
 * folders only had drifted: eight files had no line. Every file git tracks under protocol/,
 * common/, gateway/, ingest/, device-sim/, bench/ and scripts/ (bench/results/ data aside)
 * must be named, as `file.ts` (or a glob like `mqtt-*.ts`), in the place layout.md gives its
 * folder: the table row whose first cell is `folder/`, or the section headed `## folder/`.
 * The failure names each file and the row it belongs in.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../helpers/index.ts'

export const CHECKED = /^(protocol|common|gateway|ingest|device-sim|bench|scripts)\//
const NOT_CHECKED = /^bench\/results\//

/** The text docs/layout.md gives a folder: table rows whose first cell names `folder/`, and a `## folder/` section. */
export function placeOf (doc: string, folder: string): string {
  const lines = doc.split('\n')
  const out: string[] = []
  let inSection = false
  for (const line of lines) {
    if (/^## /.test(line)) inSection = line.trim() === `## ${folder}/`
    const first = /^\|([^|]*)\|/.exec(line)?.[1]
    if (inSection || (first !== undefined && first.includes('`' + folder + '/`'))) out.push(line)
  }
  return out.join('\n')
}

const glob = (pattern: string): RegExp => new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*') + '$')

/** Whether the place names the file: `base`, `folder/base`, or a glob matching base. */
export function names (place: string, folder: string, base: string): boolean {
  for (const m of place.matchAll(/`([^`\s]+)`/g)) {
    const token = m[1]!
    if (token === base || token === `${folder}/${base}`) return true
    if (token.includes('*') && glob(token).test(base)) return true
  }
  return false
}

/** One message for each file the doc does not name in its folder's place. */
export function unnamedFiles (doc: string, files: readonly string[]): string[] {
  const out: string[] = []
  for (const file of files) {
    const cut = file.lastIndexOf('/')
    const folder = file.slice(0, cut)
    const base = file.slice(cut + 1)
    const place = placeOf(doc, folder)
    if (place === '') out.push(`${file}: docs/layout.md has no row for \`${folder}/\`; add one naming \`${base}\``)
    else if (!names(place, folder, base)) out.push(`${file}: add \`${base}\` to the row of \`${folder}/\` in docs/layout.md`)
  }
  return out
}

function trackedFiles (): string[] {
  return execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    .split('\0').filter((f) => CHECKED.test(f) && !NOT_CHECKED.test(f)).sort()
}

test('docs/layout.md names every tracked file of the code folders, in its folder\'s row', () => {
  const files = trackedFiles()
  // sanity: the listing found the tree, not an empty or partial one
  for (const f of ['protocol/reading.ts', 'common/config.ts', 'gateway/store/keys.ts', 'ingest/server.ts', 'bench/intake.ts', 'scripts/run-tests.mjs']) assert.ok(files.includes(f), `listing misses ${f}`)
  const missing = unnamedFiles(readFileSync(join(ROOT, 'docs', 'layout.md'), 'utf8'), files)
  assert.deepEqual(missing, [], 'docs/layout.md does not name these files:\n' + missing.join('\n'))
})

test('the check finds a file by name, path or glob in its own folder\'s row or section only', () => {
  const doc = [
    '## protocol/', '', '| file | concern |', '| --- | --- |', '| `reading.ts` | payloads |', '',
    '## gateway/', '', '| folder | what |', '| --- | --- |',
    '| `gateway/store/` | `keys.ts`, `gateway/store/cycle.ts` |',
    '| `bench/lib/` | load generators (`mqtt-*.ts`) |'
  ].join('\n')
  assert.deepEqual(unnamedFiles(doc, ['protocol/reading.ts', 'gateway/store/keys.ts', 'gateway/store/cycle.ts', 'bench/lib/mqtt-wire.ts']), [])
  assert.deepEqual(unnamedFiles(doc, ['protocol/keys.ts', 'gateway/store/reading.ts', 'gateway/flush/index.ts', 'bench/lib/wire.ts']), [
    'protocol/keys.ts: add `keys.ts` to the row of `protocol/` in docs/layout.md',
    'gateway/store/reading.ts: add `reading.ts` to the row of `gateway/store/` in docs/layout.md',
    'gateway/flush/index.ts: docs/layout.md has no row for `gateway/flush/`; add one naming `index.ts`',
    'bench/lib/wire.ts: add `wire.ts` to the row of `bench/lib/` in docs/layout.md'
  ])
})
