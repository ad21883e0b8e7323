/**
 * The import rule of docs/layout.md, enforced. protocol/ had become a catch-all
 * ("it lives in protocol/ because both sides need it"), three components kept a copy of
 * the same logger, and bench/ imported test/. This reads every relative import under the
 * folders below and fails naming the file and the import that breaks the rule; and it
 * fails on an import circle among the shipped folders, naming the circle's path (three had
 * grown unnoticed: the broker's limit files, the gateway's config and TLS settings, the
 * device payload's decoder and its text checks).
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

/** The folders whose import graph must have no circle: the shipped code. */
export const NO_CIRCLES = ['protocol', 'common', 'gateway', 'ingest', 'device-sim'] as const

/** The import graph of `files`: file -> the files of `files` it imports (type-only imports too). */
export function importGraph (files: ReadonlyMap<string, string>): Map<string, string[]> {
  const graph = new Map<string, string[]>()
  for (const [file, text] of files) {
    const to = relativeImports(text)
      .map((spec) => posix.normalize(posix.join(posix.dirname(file), spec)))
      .filter((target) => files.has(target) && target !== file)
    graph.set(file, [...new Set(to)])
  }
  return graph
}

/**
 * Every import circle of `graph`, each as its path from its first file (in sort order) back
 * to that file: `a.ts -> b.ts -> a.ts`. A depth-first search from every file, in sort order;
 * an edge back to a file still on the path closes a circle. Type-only imports count: a
 * circle of types is still two files that cannot be read, moved or tested one without the
 * other.
 */
export function circles (graph: ReadonlyMap<string, readonly string[]>): string[] {
  const found = new Set<string>()
  const done = new Set<string>()
  const path: string[] = []
  const onPath = new Map<string, number>()
  const visit = (file: string): void => {
    onPath.set(file, path.length)
    path.push(file)
    for (const next of graph.get(file) ?? []) {
      const at = onPath.get(next)
      if (at !== undefined) {
        const loop = path.slice(at)
        const start = loop.indexOf([...loop].sort()[0]!)
        const rotated = [...loop.slice(start), ...loop.slice(0, start)]
        found.add([...rotated, rotated[0]].join(' -> '))
      } else if (!done.has(next)) {
        visit(next)
      }
    }
    path.pop()
    onPath.delete(file)
    done.add(file)
  }
  for (const file of [...graph.keys()].sort()) if (!done.has(file)) visit(file)
  return [...found].sort()
}

/**
 * Circles known and being broken elsewhere, each as `circles` reports it (none now: the
 * ingest's HTTP server and MQTT consumer share ingest/pipeline.ts instead of each other).
 * A circle not listed fails the test, and so does a listed one that is gone (drop its line).
 */
export const KNOWN_CIRCLES: readonly string[] = []

test('the relative imports of protocol, common, gateway, ingest, device-sim make no circle', () => {
  const files = new Map<string, string>()
  for (const dir of NO_CIRCLES) for (const file of sources(ROOT, dir)) files.set(file, readFileSync(join(ROOT, file), 'utf8'))
  const found = circles(importGraph(files))
  const fresh = found.filter((c) => !KNOWN_CIRCLES.includes(c))
  assert.deepEqual(fresh, [], `import circles (break each: move what both sides need to a third file, or pass it in):\n${fresh.join('\n')}`)
  const gone = KNOWN_CIRCLES.filter((c) => !found.includes(c))
  assert.deepEqual(gone, [], 'a known circle is gone: drop its line from KNOWN_CIRCLES')
})

test('the circle check finds a circle, names its path, and passes a graph without one', () => {
  const files = new Map([
    ['gateway/a.ts', "import { b } from './b.ts'\nimport type { D } from './x/d.ts'"],
    ['gateway/b.ts', "import { c } from './c.ts'"],
    ['gateway/c.ts', "import type { A } from './a.ts'\nimport pino from 'pino'"],
    ['gateway/x/d.ts', "import { e } from '../../protocol/e.ts'"],
    ['protocol/e.ts', "export * from './f.ts'"],
    ['protocol/f.ts', "import { e } from './e.ts'"]
  ])
  assert.deepEqual(circles(importGraph(files)), [
    'gateway/a.ts -> gateway/b.ts -> gateway/c.ts -> gateway/a.ts',
    'protocol/e.ts -> protocol/f.ts -> protocol/e.ts'
  ])
  files.set('gateway/c.ts', "import pino from 'pino'")
  files.set('protocol/f.ts', 'export const f = 1')
  assert.deepEqual(circles(importGraph(files)), [])
  // the same circle entered from another file is reported once, from its first file
  assert.deepEqual(circles(new Map([['z.ts', ['y.ts']], ['y.ts', ['x.ts']], ['x.ts', ['y.ts']]])), ['x.ts -> y.ts -> x.ts'])
})

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
