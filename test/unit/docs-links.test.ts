/**
 * Code cited docs/upstream.md and docs/errors.md cited protocol/config.ts, neither of which
 * existed: a reader following them found nothing. Every repository path (`gateway/x.ts`,
 * `docs/y.md`, `test/unit/z.test.ts`, a `folder/`) a source file or a document names must
 * exist, and every relative link of README.md, CONTRIBUTING.md and docs/*.md must reach a
 * file (and, for `file.md#anchor`, a heading of that file).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { ROOT } from '../helpers/index.ts'
import { NO_ANSWER, OTHER_5XX, OTHER_STATUS, STATUS_ACTIONS, refusalOf } from '../../gateway/flush/status-actions.ts'

const SKIP = new Set(['node_modules', 'dist', 'data', '.git', '.tmp', 'results'])
const TEXT = /\.(ts|mjs|cjs|js|sh|json|md|html|css|service)$|^run$/

function * files (dir: string): Generator<string> {
  for (const name of readdirSync(dir).sort()) {
    if (SKIP.has(name)) continue
    const p = join(dir, name)
    if (statSync(p).isDirectory()) yield * files(p)
    else if (TEXT.test(name) && name !== 'package-lock.json') yield p
  }
}

/** `docs/x.md` paths a text names that are not in the repository. */
export function missingCitations (text: string, exists: (rel: string) => boolean): string[] {
  const out = new Set<string>()
  for (const m of text.matchAll(/(?<![\w/.-])docs\/[A-Za-z0-9_.-]+\.md\b/g)) if (!exists(m[0])) out.add(m[0])
  return [...out]
}

const TOP = '(?:protocol|common|gateway|ingest|device-sim|bench|scripts|test|docs|deploy|web|bin|\\.ci)'
/** A path from a top-level folder, ending in a file extension or `/`; not a glob, template or MQTT topic. */
const PATH = new RegExp(`(?<![\\w/.@$-])(${TOP}/[A-Za-z0-9_./-]*(?:\\.[a-z]{1,5}|/))(?![\\w/*{<-])`, 'g')

/**
 * Repository paths a text names that are not in the repository. A `.js` path counts when its
 * `.ts` source exists (the compiled file under dist/), and bench/results/ paths are a
 * bench's output, written when it first runs.
 */
export function missingPaths (text: string, exists: (rel: string) => boolean): string[] {
  const out = new Set<string>()
  for (const m of text.matchAll(PATH)) {
    const p = m[1]!.replace(/\.$/, '')
    if (p.startsWith('bench/results/') || exists(p)) continue
    if (p.endsWith('.js') && exists(p.slice(0, -3) + '.ts')) continue
    out.add(p)
  }
  return [...out]
}

/**
 * Files that cite made-up paths on purpose (the checks' own examples), and citations in
 * folders other work is changing now, fixed after it merges: empty this list then.
 */
const FIXTURE_FILES = new Set(['test/unit/docs-links.test.ts', 'test/unit/import-rule.test.ts', 'test/unit/layout-files.test.ts'])
export const STALE_PATHS_REMAINDER: readonly string[] = []

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes, repeats numbered. */
export function anchors (markdown: string): Set<string> {
  const out = new Set<string>()
  const seen = new Map<string, number>()
  let fenced = false
  for (const line of markdown.split('\n')) {
    if (/^```/.test(line)) fenced = !fenced
    const m = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (!m) continue
    const base = m[1]!.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    out.add(n === 0 ? base : `${base}-${n}`)
  }
  return out
}

/** Relative links of a markdown file (outside code blocks) that reach no file or no heading. */
export function brokenLinks (file: string, markdown: string, read: (abs: string) => string | undefined): string[] {
  const bad: string[] = []
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '').replace(/`[^`\n]*`/g, '')
  for (const m of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const target = m[1]!
    if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue // http:, https:, mailto:
    const [path, anchor] = target.split('#') as [string, string | undefined]
    const abs = path === '' ? file : join(dirname(file), decodeURIComponent(path))
    const text = read(abs)
    if (text === undefined) { bad.push(`${target} (no such file)`); continue }
    if (anchor && abs.endsWith('.md') && !anchors(text).has(anchor)) bad.push(`${target} (no such heading)`)
  }
  return bad
}

const exists = (rel: string): boolean => existsSync(join(ROOT, rel))
const readOrUndefined = (abs: string): string | undefined => {
  try { return statSync(abs).isDirectory() ? '' : readFileSync(abs, 'utf8') } catch { return undefined }
}

test('every docs/*.md that code or docs cite exists', () => {
  const bad: string[] = []
  for (const f of files(ROOT)) {
    if (f.endsWith('docs-links.test.ts')) continue
    for (const c of missingCitations(readFileSync(f, 'utf8'), exists)) bad.push(`${relative(ROOT, f)}: ${c}`)
  }
  assert.deepEqual(bad, [])
})

test('every repository path that code or docs cite exists', () => {
  const bad: string[] = []
  for (const f of files(ROOT)) {
    const rel = relative(ROOT, f).split('\\').join('/')
    if (FIXTURE_FILES.has(rel)) continue
    for (const c of missingPaths(readFileSync(f, 'utf8'), exists)) bad.push(`${rel}: ${c}`)
  }
  const fresh = bad.filter((b) => !STALE_PATHS_REMAINDER.includes(b))
  assert.deepEqual(fresh, [], 'these files cite paths that do not exist (file: path):\n' + fresh.join('\n'))
  const fixed = STALE_PATHS_REMAINDER.filter((b) => !bad.includes(b))
  assert.deepEqual(fixed, [], 'fixed: take these out of STALE_PATHS_REMAINDER')
})

test('every relative link in README.md, CONTRIBUTING.md and docs/*.md resolves', () => {
  const docs = [join(ROOT, 'README.md'), join(ROOT, 'CONTRIBUTING.md'),
    ...readdirSync(join(ROOT, 'docs')).filter((n) => n.endsWith('.md')).sort().map((n) => join(ROOT, 'docs', n))]
  const bad: string[] = []
  for (const f of docs) for (const b of brokenLinks(f, readFileSync(f, 'utf8'), readOrUndefined)) bad.push(`${relative(ROOT, f)}: ${b}`)
  assert.deepEqual(bad, [])
})

test('README.md links every document under docs/', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const unlinked = readdirSync(join(ROOT, 'docs')).filter((n) => n.endsWith('.md')).sort().filter((n) => !readme.includes(`](docs/${n})`) && !readme.includes(`](docs/${n}#`))
  assert.deepEqual(unlinked, [], 'README.md has no link to these docs')
})

test("README's two commands are real, and .ci/run runs exactly README's test command", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const lines = /```sh\n(npm install && npm start[^\n]*)\n(npm install && npm test[^\n]*)\n```/.exec(readme)
  assert.ok(lines, 'README starts with the two commands: npm install && npm start, npm install && npm test')
  const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts
  assert.ok(scripts.start && scripts.test, 'package.json has start and test scripts')
  const testCmd = /&& (npm test)\b/.exec(lines[2]!)![1]!
  const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8').split('\n').map((l) => l.trim())
  assert.ok(ci.includes(testCmd), `.ci/run runs ${testCmd}`)
})

test('the checks catch a missing doc, a dead link and a dead anchor', () => {
  const have = new Set(['docs/design.md'])
  assert.deepEqual(missingCitations('see docs/design.md and docs/upstream.md (docs/upstream.md)', (r) => have.has(r)), ['docs/upstream.md'])
  const there = new Set(['gateway/main.ts', 'docs/', 'protocol/errors.ts'])
  assert.deepEqual(missingPaths('`protocol/config.ts`, protocol/errors.ts, `docs/`, dist/gateway/main.js, `test/nosubscribe`, `bench/results/x.jsonl`, mqtt-*.ts `gateway/*.ts` `test/{a,b}.ts` `bench/results/<s>.jsonl` gateway/gone/.', (r) => there.has(r)),
    ['protocol/config.ts', 'gateway/gone/'])
  const files = new Map([['/r/docs/a.md', '# A\n\n## Two words\n'], ['/r/README.md', '']])
  const read = (abs: string): string | undefined => files.get(abs)
  assert.deepEqual(brokenLinks('/r/README.md', '[a](docs/a.md#two-words) [b](docs/b.md) [c](docs/a.md#three) `[d](x.md)` [e](https://x.org/y.md)', read),
    ['docs/b.md (no such file)', 'docs/a.md#three (no such heading)'])
  assert.ok(anchors('## 2. Layout and dependencies\n### Devices without `boot`').has('devices-without-boot'))
  assert.ok(anchors('## 2. Layout and dependencies').has('2-layout-and-dependencies'))
})

test('docs/upstream.md quotes the status table of gateway/flush/status-actions.ts', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'upstream.md'), 'utf8')
  const rows = doc.split('\n').filter((l) => /^\| (\d{3}|other 5xx|anything else|no answer)/.test(l)).map((l) => l.split('|').map((c) => c.trim()))
  const rowFor = (label: string): string[] => {
    const r = rows.find((cells) => cells[1]!.split(/,\s*/).includes(label) || cells[1]!.startsWith(label))
    assert.ok(r, `docs/upstream.md has no row for ${label}`)
    return r
  }
  const check = (label: string, rule: { health: string, failover: boolean }): void => {
    const r = rowFor(label)
    assert.equal(r[3], rule.health, `${label}: upstream state`)
    assert.equal(r[4], rule.failover ? 'yes' : 'no', `${label}: next URL`)
  }
  for (const [status, rule] of Object.entries(STATUS_ACTIONS)) {
    check(status, rule)
    // the answer column names the refusal the status is read as (answer.ts)
    if (status !== '200') assert.ok(rowFor(status)[5]!.includes(`refused: ${refusalOf(Number(status)).replace('-', ' ')}`), `${status}: answer column`)
  }
  check('other 5xx', OTHER_5XX)
  check('anything else', OTHER_STATUS)
  check('no answer', NO_ANSWER)
})

test('the acknowledgement table and the diagram are kept once, in README.md; design.md links them', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  const design = readFileSync(join(ROOT, 'docs', 'design.md'), 'utf8')
  const ackRow = /^\| device -> gateway, /m
  assert.match(readme, ackRow, 'README.md has the acknowledgement table')
  assert.match(readme, /^## How it works\n\n```\n/m, 'README.md has the diagram under "How it works"')
  assert.doesNotMatch(design, ackRow, 'docs/design.md keeps its own acknowledgement table: link README.md instead')
  assert.doesNotMatch(design, /^[^\n]*(devices|gateway)[^\n]*(--|─)+[^\n]*(>|▶)/m, 'docs/design.md keeps its own diagram: link README.md#how-it-works instead')
  assert.match(design, /README\.md#how-it-works/)
})
