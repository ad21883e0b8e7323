/**
 * Issue 21: code cited docs/upstream.md, which did not exist. Every `docs/*.md` a source file
 * or a document names must exist, and every relative link of README.md, CONTRIBUTING.md and
 * docs/*.md must reach a file (and, for `file.md#anchor`, a heading of that file).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { ROOT } from '../helpers/index.ts'
import { NO_ANSWER, OTHER_5XX, OTHER_STATUS, STATUS_ACTIONS } from '../../gateway/flush/status-actions.ts'

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

/**
 * `test/<tier>/<file>.ts` paths a text names that are not in the repository: the systemd
 * unit said its check was test/unit/deploy.test.ts, which is test/integration/deploy.test.ts.
 */
export function missingTestCitations (text: string, exists: (rel: string) => boolean): string[] {
  const out = new Set<string>()
  for (const m of text.matchAll(/(?<![\w/.-])test\/(?:unit|integration|faults|helpers)\/[A-Za-z0-9_.-]+\.ts\b/g)) if (!exists(m[0])) out.add(m[0])
  return [...out]
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

test('every test file that code, docs, the unit file or the launcher cite exists', () => {
  const bad: string[] = []
  for (const f of files(ROOT)) {
    if (f.endsWith('docs-links.test.ts')) continue
    for (const c of missingTestCitations(readFileSync(f, 'utf8'), exists)) bad.push(`${relative(ROOT, f)}: ${c}`)
  }
  assert.deepEqual(bad, [])
  // the check can fail
  assert.deepEqual(missingTestCitations('Checked by test/unit/deploy.test.ts', exists), ['test/unit/deploy.test.ts'])
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
  for (const [status, rule] of Object.entries(STATUS_ACTIONS)) check(status, rule)
  check('other 5xx', OTHER_5XX)
  check('anything else', OTHER_STATUS)
  check('no answer', NO_ANSWER)
})
