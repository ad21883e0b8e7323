#!/usr/bin/env node
// Runs the test files named on the command line (files or folders; default: test/) with
// node:test through tsx, tier by tier.
//
// - Node 20's `--test` does not expand globs, and `--import tsx --test` with no files finds
//   none and passes: so the files are listed here, and a path that matches no test file is
//   a failure (a missing path, a file that is not `*.test.ts`, a folder without any).
// - A file's tier is the nearest folder of its path named unit, integration or faults. The
//   unit tier runs first and alone: when it fails the run stops there, so a broken unit
//   test is reported in about a minute instead of after the kill -9, Chromium and strace tests.
//   The other tiers then run together in one node process, faults first and the largest
//   files first within a tier: the long files start early and the short ones fill the
//   gaps at the end, as they did when all tiers ran as one.
// - node's own reporter still writes to stdout (its `# pass N` / `# fail N` lines); a second
//   reporter (scripts/test-tally.mjs) counts results per file into a temp file, from which
//   the last lines of the run say, one line a tier, what passed, failed and skipped.
// - A test never skips (CONTRIBUTING.md): a skipped test fails its tier, unless the run
//   selects tests by name (`--test-name-pattern`, `--test-only`), which node reports as skips.
//
// Flags starting with `-` go to node (`--test-name-pattern=...`: one argument, with `=`).
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative, resolve, sep } from 'node:path'
import { spawnSync } from 'node:child_process'

const TIERS = ['unit', 'integration', 'faults']
const ROOT = resolve(import.meta.dirname, '..')

const args = process.argv.slice(2)
const paths = args.filter((a) => !a.startsWith('-'))
const extra = args.filter((a) => a.startsWith('-'))

function fail (message) {
  console.error(`run-tests: ${message}`)
  process.exit(1)
}

/** Every `*.test.ts` file a path names: itself, or the ones under it (helpers and fixtures excluded). */
function collect (path) {
  let st
  try { st = statSync(path) } catch { fail(`${path}: no such file or folder`) }
  if (st.isFile()) {
    if (!path.endsWith('.test.ts')) fail(`${path} is not a test file (*.test.ts)`)
    return [path]
  }
  const found = []
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name)
      if (statSync(p).isDirectory()) { if (name !== 'helpers' && name !== 'fixtures') walk(p) } else if (name.endsWith('.test.ts')) found.push(p)
    }
  }
  walk(path)
  if (found.length === 0) fail(`no *.test.ts files under ${path}`)
  return found
}

function tierOf (file) {
  const dirs = relative(ROOT, resolve(file)).split(sep).slice(0, -1)
  return dirs.findLast((d) => TIERS.includes(d)) ?? 'other'
}

// each file once, however it was named (`test/unit`, `./test/unit/x.test.ts`)
const seen = new Set()
const files = (paths.length ? paths : ['test']).flatMap(collect).filter((f) => !seen.has(resolve(f)) && seen.add(resolve(f)))
const byTier = new Map()
for (const f of files) {
  const tier = tierOf(f)
  if (!byTier.has(tier)) byTier.set(tier, [])
  byTier.get(tier).push(f)
}
// within a tier the largest files go first: size is the only hint of a file's duration
// available on a fresh clone, and a long file started last leaves a core idle at the end
for (const list of byTier.values()) list.sort((a, b) => statSync(b).size - statSync(a).size)
// phase 1: unit alone; phase 2: the rest, longest tiers first
const later = ['faults', 'integration', 'other'].filter((t) => byTier.has(t))
const phases = [byTier.has('unit') ? ['unit'] : [], later].filter((p) => p.length > 0)

const concurrency = process.env.TEST_CONCURRENCY ?? '2'
// a hung test fails after this instead of holding CI until its 90-minute limit; Node 20
// bounds each whole file by it as well (a file over it shows as one cancelled test)
const timeout = process.env.TEST_TIMEOUT_MS ?? '420000'
// a run that picks tests by name reports the others as skipped: those skips are wanted
const selects = extra.some((a) => /^--test-(name-pattern|skip-pattern|only)\b/.test(a))
const ownReporter = extra.some((a) => a.startsWith('--test-reporter'))
// started from inside a node:test file (the runner's own test), node would take the run
// for one of its file subprocesses and report in its internal format instead of TAP
const childEnv = { ...process.env }
delete childEnv.NODE_TEST_CONTEXT
const tallyDir = mkdtempSync(join(tmpdir(), 'run-tests-'))
process.on('exit', () => rmSync(tallyDir, { recursive: true, force: true }))

console.error(`run-tests: ${files.length} files (${[...TIERS, 'other'].filter((t) => byTier.has(t)).map((t) => `${t} ${byTier.get(t).length}`).join(', ')})`)
const lines = []
let failed = false
for (const [i, tiers] of phases.entries()) {
  const phaseFiles = tiers.flatMap((t) => byTier.get(t))
  const tallyFile = join(tallyDir, `phase-${i}.json`)
  // node's default reporter (spec on a terminal, TAP otherwise) stays on stdout
  const reporters = ownReporter
    ? []
    : [`--test-reporter=${process.stdout.isTTY ? 'spec' : 'tap'}`, '--test-reporter-destination=stdout',
        `--test-reporter=${join(ROOT, 'scripts', 'test-tally.mjs')}`, `--test-reporter-destination=${tallyFile}`]
  const t0 = Date.now()
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, `--test-timeout=${timeout}`,
    ...reporters, ...extra, ...phaseFiles], { stdio: 'inherit', env: childEnv })
  const secs = Math.round((Date.now() - t0) / 1000)
  let tally = null
  try { tally = JSON.parse(readFileSync(tallyFile, 'utf8')) } catch {}
  const phaseOk = r.status === 0
  for (const tier of tiers) {
    const n = byTier.get(tier).length
    const together = tiers.length > 1 ? `, run with ${tiers.filter((t) => t !== tier).join(' and ')}` : ''
    if (!tally) {
      // no counts (an own --test-reporter, or node died): the exit status is all there is
      lines.push(`run-tests: ${tier} ${phaseOk ? 'passed' : 'FAILED'}: ${n} files, ${secs} s${together} (no per-test counts)`)
      failed ||= !phaseOk
      continue
    }
    const c = { pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 }
    for (const f of byTier.get(tier)) for (const k of Object.keys(c)) c[k] += tally[resolve(f)]?.[k] ?? 0
    // tests a shared suite defines (test/integration/sink-contract.ts, command-store-contract.ts)
    // carry the suite's file: counted in the tier of its folder
    const listed = new Set(phaseFiles.map((f) => resolve(f)))
    for (const [file, counts] of Object.entries(tally)) {
      if (listed.has(file) || !file.startsWith(resolve(ROOT, 'test', tier) + sep)) continue
      for (const k of Object.keys(c)) c[k] += counts[k] ?? 0
    }
    const badSkips = selects ? 0 : c.skipped
    // a file whose tests all passed can still fail (an error after its last test): the exit status counts too
    const ok = c.fail === 0 && c.cancelled === 0 && badSkips === 0 && (phaseOk || tiers.length > 1)
    failed ||= !ok
    lines.push(`run-tests: ${tier} ${ok ? 'passed' : 'FAILED'}: ${c.pass} passed, ${c.fail} failed, ${c.cancelled} cancelled, ${c.skipped} skipped` +
      `${badSkips ? ' (a test never skips)' : ''}, ${n} files, ${secs} s${together}`)
  }
  // when tiers share a run, a failure the tally could not place on a file still fails the run
  if (!phaseOk && !failed) lines.push(`run-tests: node exited ${r.status ?? r.signal} with no failed test counted: see its output above`)
  failed ||= !phaseOk
  if (failed && i < phases.length - 1) {
    for (const tier of phases.slice(i + 1).flat()) lines.push(`run-tests: ${tier} not run: the ${tiers.join(' and ')} tier failed first`)
    break
  }
}
for (const l of lines) console.log(l)
process.exit(failed ? 1 : 0)
