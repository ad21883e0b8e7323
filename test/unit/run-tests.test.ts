/**
 * scripts/run-tests.mjs, the runner behind `npm test`, run as a child process on small
 * fixture files (test/fixtures/run-tests/, which no real run picks up).
 *
 * Guards: one file given on the command line runs (it used to be walked as a folder and
 * failed with ENOTDIR, so CONTRIBUTING.md's "one file" line did not work); a path that
 * matches no test file fails instead of passing with nothing run; a failing unit tier stops
 * the run before the slow tiers; a skipped test fails its tier; each tier ends with one
 * summary line, after node's own `# pass` / `# fail` lines.
 */
import { describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { ROOT } from '../helpers/index.ts'

const FIX = 'test/fixtures/run-tests'

type Run = { code: number, out: string, err: string }

function runTests (...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    // TAP on stdout whatever the terminal, as in CI
    execFile(process.execPath, [join(ROOT, 'scripts', 'run-tests.mjs'), ...args], { cwd: ROOT, env: { ...process.env, TEST_CONCURRENCY: '2' }, timeout: 60_000 },
      (err, out, errOut) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out, err: errOut }))
  })
}

/** The runner's closing lines, one a tier. */
const summary = (r: Run): string[] => r.out.split('\n').filter((l) => l.startsWith('run-tests: '))

describe('scripts/run-tests.mjs', { concurrency: true }, () => {
  test('one file runs, with node\'s counts and one summary line for its tier', async () => {
    const r = await runTests(`${FIX}/integration/passes.test.ts`)
    assert.equal(r.code, 0, r.err + r.out)
    assert.match(r.out, /fixture integration test ran/)
    assert.match(r.out, /^# pass 1$/m)
    assert.match(r.out, /^# fail 0$/m)
    assert.deepEqual(summary(r).map((l) => l.replace(/\d+ s$/, 'N s')), ['run-tests: integration passed: 1 passed, 0 failed, 0 cancelled, 0 skipped, 1 files, N s'])
  })

  test('a file and a folder together: each file runs once', async () => {
    const r = await runTests(`${FIX}/integration/passes.test.ts`, `${FIX}/unit`, `./${FIX}/unit/fails.test.ts`)
    assert.equal(r.code, 1)
    assert.match(r.err, /run-tests: 2 files \(unit 1, integration 1\)/)
    assert.match(summary(r)[0]!, /^run-tests: unit FAILED: 0 passed, 1 failed,/)
  })

  test('paths that match no test file fail, saying which', async () => {
    const cases: Array<[string, RegExp]> = [
      [`${FIX}/nowhere.test.ts`, /nowhere\.test\.ts: no such file or folder/],
      ['test/helpers/index.ts', /test\/helpers\/index\.ts is not a test file/],
      ['test/helpers', /no \*\.test\.ts files under test\/helpers/]
    ]
    for (const [path, message] of cases) {
      const r = await runTests(path)
      assert.equal(r.code, 1, path)
      assert.match(r.err, message)
      assert.doesNotMatch(r.out, /^# pass/m, `${path}: nothing ran`)
    }
  })

  test('a failing unit tier stops the run before the other tiers', async () => {
    const r = await runTests(FIX)
    assert.equal(r.code, 1)
    assert.match(r.out, /not ok 1 - fixture: a failing unit test/)
    assert.doesNotMatch(r.out, /fixture integration test ran/, 'the integration tier did not run')
    assert.deepEqual(summary(r).map((l) => l.replace(/, \d+ s$/, '')), [
      'run-tests: unit FAILED: 0 passed, 1 failed, 0 cancelled, 0 skipped, 1 files',
      'run-tests: integration not run: the unit tier failed first'
    ])
  })

  test('a skipped test fails its tier, unless the run picks tests by name', async () => {
    const r = await runTests(`${FIX}/integration/skips.test.ts`)
    assert.equal(r.code, 1)
    assert.match(summary(r)[0]!, /^run-tests: integration FAILED: 0 passed, 0 failed, 0 cancelled, 1 skipped \(a test never skips\)/)
    const picked = await runTests(`${FIX}/integration`, '--test-name-pattern=passing')
    assert.equal(picked.code, 0, picked.out)
    assert.match(summary(picked)[0]!, /^run-tests: integration passed: 1 passed, 0 failed, 0 cancelled, 1 skipped,/)
  })
})
