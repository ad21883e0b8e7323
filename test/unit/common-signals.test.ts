/**
 * The stop-signal rule of every CLI (common/signals.ts): the first signal stops gracefully,
 * a copy within 0.5 s (npm forwarding the terminal's Ctrl-C) is ignored, a signal after
 * that quits at once. Before, the copy 3 ms later forced an exit without the drain.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { SIGNAL_COALESCE_MS, stopSignalDecider } from '../../common/index.ts'

function run (times: number[]): string[] {
  const seen: string[] = []
  let now = 0
  const decide = stopSignalDecider({ onStop: () => seen.push('stop'), onForce: () => seen.push('force'), onRepeat: () => seen.push('repeat'), now: () => now })
  for (const t of times) { now = t; decide('SIGINT') }
  return seen
}

test('a repeat within the window is the same Ctrl-C; one after it forces', () => {
  assert.equal(SIGNAL_COALESCE_MS, 500)
  assert.deepEqual(run([1000]), ['stop'])
  assert.deepEqual(run([1000, 1003]), ['stop', 'repeat'])
  assert.deepEqual(run([1000, 1005, 1499]), ['stop', 'repeat', 'repeat'])
  assert.deepEqual(run([1000, 1500]), ['stop', 'force'])
  assert.deepEqual(run([1000, 1003, 2000]), ['stop', 'repeat', 'force'])
})
