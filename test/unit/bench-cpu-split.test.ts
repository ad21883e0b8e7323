/**
 * bench/lib/cpu-split.ts and e2e-checks.ts: the /proc/PID/stat parser, the per-window CPU arithmetic that
 * bench/e2e.ts reports per process (us per uploaded reading, % of a core), and its goal checks.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cpuShare, fromCpuUsage, parseProcStat } from '../../bench/lib/cpu-split.ts'
import { e2eChecks, type Step } from '../../bench/lib/e2e-checks.ts'

// a real line's shape: pid (comm) state ppid ... utime(14) stime(15) ...
const line = (comm: string, utime: number, stime: number): string =>
  `4242 (${comm}) S 1 4242 4242 0 -1 4194560 31337 0 12 0 ${utime} ${stime} 0 0 20 0 11 0 123456 1234567890 45678 18446744073709551615 1 1 0 0 0 0 0 4096 134234626 0 0 0 17 1 0 0 0 0 0\n`

test('parseProcStat reads utime and stime in seconds, whatever the command name holds', () => {
  assert.deepEqual(parseProcStat(line('node', 250, 50), 100), { userS: 2.5, systemS: 0.5 })
  // a name with spaces and parentheses: fields are counted from the last ')'
  assert.deepEqual(parseProcStat(line('my (odd) name) x', 1000, 0), 100), { userS: 10, systemS: 0 })
  assert.deepEqual(parseProcStat(line('node', 3, 1), 1000), { userS: 0.003, systemS: 0.001 })
})

test('parseProcStat refuses what is not a stat line', () => {
  assert.equal(parseProcStat('', 100), null)
  assert.equal(parseProcStat('no parentheses 1 2 3', 100), null)
  assert.equal(parseProcStat('1 (node) S 1 2', 100), null, 'too few fields')
  assert.equal(parseProcStat(line('node', 1, 1), 0), null, 'no clock tick')
})

test('cpuShare: % of a core over the window and us per reading', () => {
  const s = cpuShare({ userS: 1, systemS: 0.5 }, { userS: 5, systemS: 1.5 }, 10, 200_000)
  assert.deepEqual(s, { cpuS: 5, pct: 50, usPerReading: 25 })
  assert.equal(cpuShare({ userS: 0, systemS: 0 }, { userS: 1, systemS: 0 }, 10, 0)!.usPerReading, null, 'nothing uploaded: no per-reading figure')
  assert.equal(cpuShare(null, { userS: 1, systemS: 0 }, 10, 1), null, 'process gone')
  assert.equal(cpuShare({ userS: 0, systemS: 0 }, { userS: 1, systemS: 0 }, 0, 1), null, 'empty window')
  assert.deepEqual(fromCpuUsage({ user: 1_500_000, system: 250_000 }), { userS: 1.5, systemS: 0.25 })
})

test('e2eChecks: sustained rate against the goal, and an upload that falls under overload', () => {
  const step = (offered: number, uploaded: number, sustained: boolean): Step => ({ offered, acked: offered, uploaded, p99Ms: 10, sustained })
  const ok = e2eChecks([step(10_000, 10_000, true), step(20_000, 19_900, true), step(30_000, 24_000, false), step(40_000, 24_100, false)], 'http')
  assert.equal(ok[0]!.pass, false, '20,000/s sustained is short of 30,000/s')
  assert.match(ok[0]!.value, /^20,000\/s/)
  assert.equal(ok[1]!.pass, true, 'upload held past the sustained rate')
  const cut = e2eChecks([step(20_000, 20_000, true), step(30_000, 24_000, false), step(40_000, 15_000, false)], 'http')
  assert.equal(cut[1]!.pass, false, 'upload fell from 24,000 to 15,000/s')
  const noise = e2eChecks([step(20_000, 20_000, true), step(30_000, 24_000, false), step(40_000, 23_500, false)], 'http')
  assert.equal(noise[1]!.pass, true, 'a 2% dip is within the tolerance')
  const all = e2eChecks([step(10_000, 10_000, true), step(30_000, 30_000, true)], 'http')
  assert.equal(all[0]!.pass, true)
  assert.equal(all[1]!.pass, null, 'no step past the sustained rate: nothing to judge')
})
