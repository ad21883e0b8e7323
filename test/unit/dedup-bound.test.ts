/**
 * The planning of store/dedup-bound.ts against the windows a cycle deletes
 * anyway (idle sweep, quarantine), on an in-memory stand-in for the LevelDB range.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import type { Db } from '../../gateway/store/db.ts'
import { DedupBound } from '../../gateway/store/dedup-bound.ts'
import { DedupWindow } from '../../gateway/store/dedup.ts'

/** A Db holding `n` windows d!w00.. with increasing reading times (w00 the oldest). */
function fakeDb (n: number): Db {
  const rows: Array<[string, Buffer]> = Array.from({ length: n }, (_, i) => {
    const w = new DedupWindow()
    w.check(1, 1)
    w.seenAtS = 1_000_000 + i
    return [`d!w${String(i).padStart(2, '0')}`, w.encode()]
  })
  return {
    iterator: () => (async function * () { yield * rows })(),
    batch: () => ({ del () {}, async write () {} })
  } as unknown as Db
}

const log = pino({ level: 'silent' })
const cycle = (...devices: string[]): Map<string, unknown> => new Map(devices.map((d) => [d, null]))

test('at the bound a new window evicts the oldest; a window the same cycle forgets or quarantines makes room instead', async () => {
  const b = await DedupBound.open(fakeDb(16), 16, log)
  assert.equal(b.size, 16)
  assert.deepEqual(b.plan(cycle('new-1'), []), { deletes: ['w00'], unwritten: null, evicted: 1 })
  assert.deepEqual(b.plan(cycle('new-1'), ['w05']), { deletes: [], unwritten: null, evicted: 0 }, 'the swept window makes room')
  // a quarantined window written again in the same cycle: its count stays
  assert.deepEqual(b.plan(cycle('w05'), ['w05']), { deletes: [], unwritten: null, evicted: 0 })
  // an old window the cycle rewrites is not a victim
  assert.deepEqual(b.plan(cycle('w00', 'new-1'), []).deletes, ['w01'])
  const p = b.plan(cycle('w00', 'new-1'), [])
  b.committed(cycle('w00', 'new-1'), [], p)
  assert.equal(b.size, 16)
  assert.deepEqual(b.plan(cycle('new-2', 'new-3'), []).deletes, ['w02', 'w03'], 'w00 moved to the young end')
})

test('more new windows in one cycle than the bound holds: the excess is not written and older copies go', async () => {
  const b = await DedupBound.open(fakeDb(16), 16, log)
  const devices = cycle(...Array.from({ length: 18 }, (_, i) => `n${i}`))
  const p = b.plan(devices, [])
  assert.equal(p.deletes.length, 16)
  assert.deepEqual([...p.unwritten!], ['n0', 'n1'])
  assert.equal(p.evicted, 18)
  b.committed(devices, [], p)
  assert.equal(b.size, 16)
})

test('more windows on disk than the bound at startup: the oldest are evicted', async () => {
  const b = await DedupBound.open(fakeDb(20), 16, log)
  assert.equal(b.size, 16)
  assert.equal(b.evictedAtOpen, 4)
  assert.deepEqual(b.plan(cycle('x'), []).deletes, ['w04'], 'w00..w03 are gone')
})
