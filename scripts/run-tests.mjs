#!/usr/bin/env node
// Runs every test file under the given roots (default: test/) with node:test through tsx.
// Node 20's `--test` does not expand globs, and `--import tsx --test` with no files finds
// none and passes: so the files are listed here, and no file found is a failure.
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'

const roots = process.argv.slice(2).filter((a) => !a.startsWith('-'))
const extra = process.argv.slice(2).filter((a) => a.startsWith('-'))
const files = []
function walk (dir) {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name)
    if (statSync(p).isDirectory()) { if (name !== 'helpers' && name !== 'fixtures') walk(p) } else if (name.endsWith('.test.ts')) files.push(p)
  }
}
for (const r of roots.length ? roots : ['test']) walk(r)
if (files.length === 0) {
  console.error(`run-tests: no *.test.ts files under ${roots.join(', ') || 'test'}`)
  process.exit(1)
}
console.error(`run-tests: ${files.length} files`)
const concurrency = process.env.TEST_CONCURRENCY ?? '2'
// a hung test fails after this instead of holding CI until its 90-minute limit
const timeout = process.env.TEST_TIMEOUT_MS ?? '240000'
const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, `--test-timeout=${timeout}`, ...extra, ...files], { stdio: 'inherit' })
process.exit(r.status ?? 1)
