import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { PartitionDedup, RunSet } from '../../ingest/dedup.ts'

test('RunSet.add merges neighbours and reports repeats', () => {
  const r = new RunSet()
  assert.equal(r.add(5), true)
  assert.equal(r.add(7), true)
  assert.equal(r.add(5), false)
  assert.deepEqual(r.toJSON(), [[5, 5], [7, 7]])
  assert.equal(r.add(6), true)
  assert.deepEqual(r.toJSON(), [[5, 7]])
  assert.equal(r.add(2), true)
  assert.deepEqual(r.toJSON(), [[2, 2], [5, 7]])
  assert.equal(r.size, 4)
})

test('RunSet.addRange counts only seqs not already present', () => {
  const r = new RunSet()
  assert.equal(r.addRange(10, 19), 10)
  assert.equal(r.addRange(10, 19), 0, 'the same range twice counts once')
  assert.equal(r.addRange(15, 24), 5, 'overlap counts the new part')
  assert.equal(r.addRange(0, 4), 5)
  assert.equal(r.addRange(0, 30), 31 - 20)
  assert.deepEqual(r.toJSON(), [[0, 30]])
  assert.equal(r.addRange(5, 4), 0, 'empty range')
})

test('RunSet.pruneBelow forgets below the floor, splitting a run', () => {
  const r = new RunSet([[1, 3], [5, 9], [20, 20]])
  assert.equal(r.pruneBelow(7), 3 + 2)
  assert.deepEqual(r.toJSON(), [[7, 9], [20, 20]])
  assert.equal(r.pruneBelow(100), 4)
  assert.equal(r.size, 0)
})

test('RunSet agrees with a plain Set (property)', () => {
  fc.assert(fc.property(fc.array(fc.oneof(
    fc.record({ op: fc.constant('add' as const), s: fc.integer({ min: 0, max: 60 }) }),
    fc.record({ op: fc.constant('range' as const), s: fc.integer({ min: 0, max: 60 }), n: fc.integer({ min: 0, max: 8 }) }),
    fc.record({ op: fc.constant('prune' as const), s: fc.integer({ min: 0, max: 60 }) })
  ), { maxLength: 80 }), (ops) => {
    const r = new RunSet()
    const ref = new Set<number>()
    for (const o of ops) {
      if (o.op === 'add') { assert.equal(r.add(o.s), !ref.has(o.s)); ref.add(o.s) } else if (o.op === 'range') {
        let added = 0
        for (let s = o.s; s < o.s + o.n; s++) if (!ref.has(s)) { ref.add(s); added++ }
        assert.equal(r.addRange(o.s, o.s + o.n - 1), added)
      } else {
        let removed = 0
        for (const s of [...ref]) if (s < o.s) { ref.delete(s); removed++ }
        assert.equal(r.pruneBelow(o.s), removed)
      }
      assert.equal(r.size, ref.size)
      for (let s = 0; s < 75; s++) assert.equal(r.has(s), ref.has(s), `has(${s})`)
      const runs = r.toJSON()
      for (let i = 1; i < runs.length; i++) assert.ok(runs[i]![0] > runs[i - 1]![1] + 1, 'runs sorted, disjoint, not adjacent')
    }
  }), { numRuns: 300 })
})

test('PartitionDedup: stored once, duplicate after, below floor is duplicate', () => {
  const d = new PartitionDedup()
  assert.equal(d.check(10), 'stored')
  assert.equal(d.check(10), 'duplicate')
  assert.equal(d.raiseFloor(10), true)
  assert.equal(d.check(9), 'duplicate', 'below the floor: a stale retransmit')
  assert.equal(d.check(11), 'stored')
})

test('PartitionDedup: floor never goes down, and state shrinks as it rises', () => {
  const d = new PartitionDedup()
  for (let s = 0; s < 1000; s++) d.check(s)
  d.check(2000)
  assert.equal(d.seen.size, 1001)
  d.raiseFloor(900)
  assert.equal(d.seen.size, 101)
  assert.equal(d.raiseFloor(100), false, 'a late request with an older floor')
  assert.equal(d.floor, 900)
  d.raiseFloor(2001)
  assert.equal(d.seen.size, 0)
  assert.deepEqual(d.snapshot(), { floor: 2001, runs: [] })
  const back = new PartitionDedup({ floor: 5, runs: [[5, 8]] })
  assert.equal(back.check(6), 'duplicate')
  assert.equal(back.check(4), 'duplicate')
  assert.equal(back.check(9), 'stored')
})
