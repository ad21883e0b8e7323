import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DedupWindow } from '../../gateway/store/dedup.ts'

test('new seqs are new once, repeats are duplicates, in order and out of order', () => {
  const w = new DedupWindow(64)
  assert.equal(w.check(1, 5), 'new')
  assert.equal(w.check(1, 5), 'duplicate')
  assert.equal(w.check(1, 3), 'new') // below hw, inside the window, unseen
  assert.equal(w.check(1, 3), 'duplicate')
  assert.equal(w.check(1, 4), 'new')
  assert.equal(w.check(1, 70), 'new') // jump: 5..69 leave the window partly
  assert.equal(w.check(1, 6), 'tooOld') // 70 - 6 >= 64
  assert.equal(w.check(1, 7), 'new') // 70 - 7 = 63: inside, never seen
  assert.equal(w.check(1, 69), 'new')
  assert.equal(w.check(1, 70), 'duplicate')
})

test('bits of seqs that slid out of the window do not leak into new ones (circular bitmap)', () => {
  const w = new DedupWindow(64)
  for (let s = 0; s < 64; s++) assert.equal(w.check('b', s), 'new')
  // 64 maps to the same bit as 0: must be new, and 0 must now be too old
  assert.equal(w.check('b', 64), 'new')
  assert.equal(w.check('b', 0), 'tooOld')
  assert.equal(w.check('b', 200), 'new')
  for (let s = 137; s < 200; s++) assert.equal(w.check('b', s), 'new', `seq ${s}`)
})

test('a new boot starts a new window; the previous boot is still recognised', () => {
  const w = new DedupWindow(64)
  assert.equal(w.check(1, 10), 'new')
  assert.equal(w.check(2, 1), 'new')
  assert.equal(w.check(2, 1), 'duplicate')
  assert.equal(w.check(1, 10), 'duplicate')
  assert.equal(w.check(3, 1), 'new') // third boot: the oldest (1) is forgotten
  assert.equal(w.check(1, 10), 'new')
  assert.equal(w.check(null, 1), 'new')
  assert.equal(w.check(null, 1), 'duplicate')
})

test('encode/decode round-trips the state, and garbage is refused', () => {
  const w = new DedupWindow(1024)
  for (const s of [1, 2, 3, 900, 5000]) w.check('boot-a', s)
  w.check(7, 2 ** 40)
  const d = DedupWindow.decode(w.encode())
  assert.equal(d.check('boot-a', 5000), 'duplicate')
  assert.equal(d.check('boot-a', 4999), 'new')
  assert.equal(d.check(7, 2 ** 40), 'duplicate')
  assert.throws(() => DedupWindow.decode(Buffer.from([0x83, 0x02, 0x01, 0x80])), /unknown layout/)
  assert.throws(() => DedupWindow.decode(Buffer.from([0xff])))
})
