/**
 * The repository cites no file outside itself. The design lives in
 * docs/design.md; nothing may point at a folder beside the checkout or at a DESIGN.md elsewhere.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { ROOT } from '../helpers/index.ts'

function * files (dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist' || name === 'data' || name.startsWith('.git') || name === 'results') continue
    const p = join(dir, name)
    if (statSync(p).isDirectory()) yield * files(p)
    else if (/\.(ts|mjs|md|json)$/.test(name) && name !== 'package-lock.json') yield p
  }
}

// the sibling folder's name is built, so this file does not cite it itself
const SIBLING = new RegExp(['\\.\\.', 'shared'].join('\\/'))

test('no file cites the sibling design folder or a DESIGN.md outside docs/', () => {
  const bad: string[] = []
  for (const f of files(ROOT)) {
    const text = readFileSync(f, 'utf8')
    if (f.endsWith('repo-self-contained.test.ts')) continue
    if (SIBLING.test(text) || /(?<!docs\/)DESIGN\.md|DESIGN section/.test(text)) bad.push(relative(ROOT, f))
  }
  assert.deepEqual(bad, [])
  assert.ok(statSync(join(ROOT, 'docs', 'design.md')).size > 10_000)
})
