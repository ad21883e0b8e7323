/**
 * The layout was described in three places, all partly stale (docs/layout.md never
 * named gateway/dlq, cli, mapping, web or the postgres sinks). docs/layout.md is now the one
 * description, and this test fails naming every folder tracked by git that it does not name
 * as `folder/`.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../helpers/index.ts'

const SKIP = new Set(['node_modules', 'dist', 'data', '.git', '.tmp'])

/** Every folder holding a tracked file, at any depth: from git, or by walking when there is no git. */
export function trackedFolders (root: string): string[] {
  let files: string[]
  try {
    files = execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\0').filter(Boolean)
  } catch {
    files = []
    const walk = (rel: string): void => {
      for (const name of readdirSync(join(root, rel))) {
        if (SKIP.has(name)) continue
        const p = rel ? `${rel}/${name}` : name
        if (statSync(join(root, p)).isDirectory()) walk(p)
        else files.push(p)
      }
    }
    walk('')
  }
  const dirs = new Set<string>()
  for (const f of files) {
    const parts = f.split('/')
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'))
  }
  return [...dirs].filter((d) => !d.split('/').some((p) => SKIP.has(p))).sort()
}

/** Folders the doc does not name as `folder/`. */
export function unnamedFolders (doc: string, folders: readonly string[]): string[] {
  return folders.filter((d) => !doc.includes('`' + d + '/`'))
}

test('docs/layout.md names every tracked folder', () => {
  const folders = trackedFolders(ROOT)
  // sanity: the listing found the tree, not an empty or partial one
  for (const d of ['protocol', 'gateway/store', 'gateway/admin/page', 'ingest/sinks', 'test/helpers', 'docs/img', 'web', 'bin']) assert.ok(folders.includes(d), `listing misses ${d}`)
  const missing = unnamedFolders(readFileSync(join(ROOT, 'docs', 'layout.md'), 'utf8'), folders)
  assert.deepEqual(missing, [], `docs/layout.md does not name these folders (add a line as \`folder/\`): ${missing.join(', ')}`)
})

test('the check names a folder the doc leaves out', () => {
  assert.deepEqual(unnamedFolders('`gateway/` and `gateway/store/`', ['common', 'gateway', 'gateway/store', 'gateway/dlq']), ['common', 'gateway/dlq'])
})

test('README and design.md point at docs/layout.md instead of keeping their own tree', () => {
  for (const f of ['README.md', 'docs/design.md']) {
    const text = readFileSync(join(ROOT, f), 'utf8')
    assert.match(text, /layout\.md/, `${f} links the layout doc`)
    // a hand-kept tree is a code block whose lines start with top-level folder names
    assert.doesNotMatch(text, /^(protocol|gateway|ingest|device-sim)\/ {2,}\S/m, `${f} keeps its own folder tree`)
  }
})
