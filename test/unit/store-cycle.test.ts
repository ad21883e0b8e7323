/**
 * The store's write cycle (gateway/store/cycle.ts): what each addition costs, and the
 * sealing rule. A window's bytes are taken when the cycle is formed; the intake goes on
 * checking seqs against the same object while the cycle is written, and those seqs' items
 * belong to the next cycle. Encoded later, a window on disk could claim a seq whose item a
 * crash then lost: its resend would be acknowledged as a duplicate.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Cycle } from '../../gateway/store/cycle.ts'
import { DedupWindow } from '../../gateway/store/dedup.ts'
import { itemCost } from '../../gateway/store/partition.ts'

test('a sealed cycle keeps its windows as they were when it was formed', () => {
  const c = new Cycle()
  const w = new DedupWindow()
  w.check(1, 1)
  const sealed = c.seal(new Map([['dev', w]]), [])
  w.check(1, 2) // the intake accepts seq 2 while the cycle is written
  const onDisk = DedupWindow.decode(sealed[0]![1])
  assert.equal(onDisk.claims(1, 1), true)
  assert.equal(onDisk.claims(1, 2), false, 'seq 2 is the next cycle\'s')
  assert.deepEqual([...c.devices.keys()], ['dev'])
  assert.throws(() => c.seal(new Map([['dev2', new DedupWindow()]]), []), /sealed once/)
})

test('a cycle accounts for what it carries', () => {
  const c = new Cycle()
  assert.equal(c.empty, true)
  assert.equal(c.append({ p: 0, s: 0, raw: Buffer.alloc(10), settled: () => {} }), itemCost(10))
  assert.equal(c.appendedBytes, itemCost(10))
  assert.equal(c.awaited, true)
  const d = new Cycle()
  d.remove(0, 3, 7)
  assert.deepEqual(d.deletes, [{ p: 0, s: 3, size: itemCost(7) }])
  assert.equal(d.deletesOnly(0), true, 'only deletes: written without fsync')
  assert.equal(d.deletesOnly(1), false, 'an eviction with it is not')
  d.deadItem(0, 4, Buffer.alloc(5), 'rejected')
  assert.equal(d.deletesOnly(0), false)
  assert.equal(d.empty, false)
})
