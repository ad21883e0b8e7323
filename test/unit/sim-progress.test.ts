/**
 * `npm start`'s live view: it said "sent" for generated readings where the simulator's
 * report says "generated" and "published" (resends included), and showed the ingest's
 * totals of every run on the data dir beside this run's readings.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ingestRunLine, progressLine, type ProgressSnapshot } from '../../device-sim/progress.ts'

const snap = (over: Partial<ProgressSnapshot> = {}): ProgressSnapshot => ({ elapsedMs: 2000, devices: 2, online: 2, generated: 10, publishes: 12, acked: 9, unacked: 1, receipts: 3, connects: 2, connectionLosses: 0, reboots: 0, targetRate: 5, ...over })

test('the view uses the report\'s words: generated readings, published packets', () => {
  const l = progressLine(snap(), null)
  assert.equal(l.generated, 10)
  assert.equal(l.published, 12)
  assert.equal(l.generatedPerS, 5)
  assert.equal('sentPerS' in l, false)
})

test('the ingest line counts this run against the counts before it, and names the all-run total', () => {
  const before = { stored: 1000, duplicates: 5, rejected: 1, evicted: 0 }
  const now = { stored: 1046, duplicates: 5, rejected: 1, evicted: 0 }
  assert.equal(ingestRunLine(before, now), 'ingest  this run: stored 46  duplicate 0  rejected 0  evicted 0  (all runs: stored 1046)')
  assert.equal(ingestRunLine({ stored: 0, duplicates: 0, rejected: 0, evicted: 0 }, now), 'ingest  this run: stored 1046  duplicate 5  rejected 1  evicted 0')
  assert.equal(ingestRunLine(before, null), 'ingest  this run: stored ?  duplicate ?  rejected ?  evicted ?  (all runs: stored ?)')
})
