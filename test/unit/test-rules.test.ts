/**
 * The rules CONTRIBUTING.md sets for tests, checked on the test files themselves.
 *
 * - A test never skips. Twenty-one MQTT upstream tests used to skip when Mosquitto was
 *   missing, while the PostgreSQL tests failed: a box without Mosquitto passed by running
 *   less than CI. Every external tool now goes through test/helpers/tools.ts, which fails
 *   the test naming the Debian package. (scripts/run-tests.mjs also fails a tier in which a
 *   test skipped at run time.)
 * - The tools the tests need are listed in four places: test/helpers/tools.ts, `.ci/run`
 *   (which installs them), README.md and CONTRIBUTING.md. They must name the same packages.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { ROOT } from '../helpers/index.ts'
import { TOOLS } from '../helpers/tools.ts'

/** `{ skip }`, `{ skip: ... }`, `t.skip(...)`, `test.skip(...)`, `describe.skip(...)`. */
const SKIP = [/\bskip\s*:/, /[{,]\s*skip\s*[,}]/, /\.skip\s*\(/]

/** Lines of TypeScript files under `dir` that make a test skip (fixtures and this file, which quotes them, excluded). */
export function skipsIn (dir: string): string[] {
  const hits: string[] = []
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) { if (name !== 'fixtures') walk(p); continue }
      if (!name.endsWith('.ts') || p === import.meta.filename) continue
      for (const [i, line] of readFileSync(p, 'utf8').split('\n').entries()) {
        if (SKIP.some((re) => re.test(line))) hits.push(`${relative(ROOT, p)}:${i + 1}: ${line.trim()}`)
      }
    }
  }
  walk(dir)
  return hits
}

test('no test skips: a missing tool fails the test instead', () => {
  assert.deepEqual(skipsIn(join(ROOT, 'test')), [])
})

test('the skip check finds the ways a test can skip (it can fail)', () => {
  // the runner's fixture that skips, scanned as a folder of its own
  assert.deepEqual(skipsIn(join(ROOT, 'test', 'fixtures', 'run-tests')), ["test/fixtures/run-tests/integration/skips.test.ts:5: t.skip('fixture skip')"])
  for (const line of ["test('x', { skip }, async (t) => {", "test('x', { skip, timeout: 1 }, () => {})", "test('x', { skip: !have && 'no' }, () => {})", "  t.skip('no tool')", "describe.skip('x', () => {})"]) {
    assert.ok(SKIP.some((re) => re.test(line)), line)
  }
  for (const line of ['assert.match(m, /deliveries_skipped_total/)', "test('malformed entries are skipped', () => {})", '// it never skips']) {
    assert.ok(!SKIP.some((re) => re.test(line)), line)
  }
})

const packages = [...new Set(Object.values(TOOLS).map((t) => t.package))].sort()

test('.ci/run installs every Debian package the tests need', () => {
  const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8')
  const installed = new Set([...ci.matchAll(/need\+=\(([^)]*)\)/g)].flatMap((m) => m[1]!.trim().split(/\s+/)))
  assert.deepEqual(packages.filter((p) => !installed.has(p)), [], '.ci/run misses these packages')
})

test('README.md and CONTRIBUTING.md list the same packages as test/helpers/tools.ts', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
  // the README's one line of packages, in backticks after "Debian packages that `.ci/run` installs"
  const line = /Debian packages that `\.ci\/run` installs:\s*`([^`]+)`/.exec(readme)
  assert.ok(line, 'README.md lists the packages .ci/run installs')
  assert.deepEqual(line[1]!.split(/\s+/).sort(), packages)
  const contributing = readFileSync(join(ROOT, 'CONTRIBUTING.md'), 'utf8')
  const list = /Some tests need Debian packages\s*\(([^)]*)\)/.exec(contributing)
  assert.ok(list, 'CONTRIBUTING.md lists the packages some tests need')
  assert.deepEqual([...list[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!).sort(), packages)
})

test('a missing tool fails the test with the Debian package to install', async () => {
  const code = "import { needTools } from './test/helpers/tools.ts'; needTools('mosquitto')"
  const r = await new Promise<{ failed: boolean, err: string }>((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: ROOT, env: { ...process.env, MOSQUITTO_BIN: '/nonexistent/mosquitto' }, timeout: 30_000 },
      (err, _out, errOut) => resolve({ failed: err !== null, err: errOut }))
  })
  assert.equal(r.failed, true)
  assert.match(r.err, /AssertionError/)
  assert.match(r.err, /\/nonexistent\/mosquitto.*install Debian's mosquitto \(apt-get install -y mosquitto/)
})
