/**
 * The import rule of docs/layout.md, enforced. protocol/ had become a catch-all
 * ("it lives in protocol/ because both sides need it"), three components kept a copy of
 * the same logger, and bench/ imported test/. This reads every relative import under the
 * folders below and fails naming the file and the import that breaks the rule.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join, posix } from 'node:path'
import { ROOT } from '../helpers/index.ts'

/** Folder -> the top-level folders its files may import (besides itself); null: anything. */
export const RULE: Record<string, readonly string[] | null> = {
  protocol: [],
  common: ['protocol'],
  gateway: ['common', 'protocol'],
  ingest: ['common', 'protocol'],
  'device-sim': ['common', 'protocol'],
  bench: ['common', 'protocol', 'scripts'],
  scripts: null
}

/** Known exceptions, [file, imported file]; docs/layout.md names each. */
export const EXCEPTIONS: readonly (readonly [string, string])[] = [
  // measures the admin sampler and the metric registry in process
  ['bench/admin-cost.ts', 'gateway/admin/live.ts'],
  ['bench/admin-cost.ts', 'gateway/metrics/index.ts']
]

// static `import ... from`, `export ... from`, `import '...'`, and `import('...')`
const IMPORT = /^\s*(?:import|export)\s(?:[^'"]*?\sfrom\s*)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm

/** The relative specifiers a source file imports. */
export function relativeImports (text: string): string[] {
  const out: string[] = []
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2]!
    if (spec.startsWith('./') || spec.startsWith('../')) out.push(spec)
  }
  return out
}

/** `file` (repo-relative, posix) imports `spec`: the rule it breaks, or null. */
export function breach (file: string, spec: string): string | null {
  const from = file.split('/')[0]!
  const allowed = RULE[from]
  if (allowed === undefined || allowed === null) return null
  const target = posix.normalize(posix.join(posix.dirname(file), spec))
  const to = target.split('/')[0]!
  if (to === from || allowed.includes(to)) return null
  if (EXCEPTIONS.some(([f, t]) => f === file && t === target)) return null
  return `${file} imports '${spec}' (${target}): ${from}/ may import only ${[from, ...allowed].map((d) => d + '/').join(', ')}`
}

function sources (root: string, dir: string): string[] {
  const out: string[] = []
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    if (e.name === 'node_modules') continue
    const rel = `${dir}/${e.name}`
    if (e.isDirectory()) out.push(...sources(root, rel))
    else if (/\.(ts|js|mjs)$/.test(e.name)) out.push(rel)
  }
  return out
}

/** Every breach under `root`, and the exceptions still in use. */
export function check (root: string): { breaches: string[], used: Set<string> } {
  const breaches: string[] = []
  const used = new Set<string>()
  for (const dir of Object.keys(RULE)) {
    for (const file of sources(root, dir)) {
      for (const spec of relativeImports(readFileSync(join(root, file), 'utf8'))) {
        const b = breach(file, spec)
        if (b) breaches.push(b)
        const target = posix.normalize(posix.join(posix.dirname(file), spec))
        if (EXCEPTIONS.some(([f, t]) => f === file && t === target)) used.add(`${file} -> ${target}`)
      }
    }
  }
  return { breaches, used }
}

test('every relative import under protocol, common, gateway, ingest, device-sim, bench, scripts keeps the rule', () => {
  const { breaches, used } = check(ROOT)
  assert.deepEqual(breaches, [], `imports that break the rule of docs/layout.md:\n${breaches.join('\n')}`)
  // an exception no file uses any more is a stale line in the rule and in the doc
  assert.deepEqual([...used].sort(), EXCEPTIONS.map(([f, t]) => `${f} -> ${t}`).sort(), 'an exception is no longer used: drop it here and in docs/layout.md')
})

test('the check sees every import form and names the file and the import', () => {
  const text = [
    "import { a } from '../common/index.ts'",
    "import type {\n  B,\n  C\n} from '../gateway/x.ts'",
    "export * from './y.ts'",
    "import './side.ts'",
    "const m = await import('../bench/lib/z.ts')",
    "import pino from 'pino'",
    ' * not an import: from "../test/x.ts"'
  ].join('\n')
  assert.deepEqual(relativeImports(text), ['../common/index.ts', '../gateway/x.ts', './y.ts', './side.ts', '../bench/lib/z.ts'])
  assert.equal(breach('protocol/a.ts', '../common/index.ts'), "protocol/a.ts imports '../common/index.ts' (common/index.ts): protocol/ may import only protocol/")
  assert.match(breach('common/a.ts', '../gateway/log.ts') ?? '', /common\/a\.ts imports '\.\.\/gateway\/log\.ts'/)
  assert.match(breach('ingest/x/a.ts', '../../device-sim/b.ts') ?? '', /ingest\/x\/a\.ts/)
  assert.match(breach('gateway/a.ts', '../bench/lib/b.ts') ?? '', /gateway\/a\.ts/)
  assert.match(breach('device-sim/a.ts', '../test/helpers/index.ts') ?? '', /device-sim\/a\.ts/)
  assert.match(breach('bench/a.ts', '../test/helpers/browser.ts') ?? '', /bench\/a\.ts imports '\.\.\/test\/helpers\/browser\.ts'/)
  assert.equal(breach('bench/admin-cost.ts', '../gateway/admin/live.ts'), null, 'the stated exception')
  assert.notEqual(breach('bench/other.ts', '../gateway/admin/live.ts'), null, 'the exception is for one file')
  assert.equal(breach('gateway/a/b.ts', '../../protocol/index.ts'), null)
  assert.equal(breach('scripts/a.ts', '../test/helpers/index.ts'), null, 'tooling may import anything')
})
