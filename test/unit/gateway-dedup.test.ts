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

test('a window without gaps is written compactly; one with a gap in the window keeps its bitmap', () => {
  const w = new DedupWindow(1024)
  for (let s = 1; s <= 3000; s++) w.check(1, s)
  const compact = w.encode()
  assert.ok(compact.length < 32, `contiguous window encodes in ${compact.length} bytes`)
  let d = DedupWindow.decode(compact)
  assert.equal(d.check(1, 3000), 'duplicate')
  assert.equal(d.check(1, 1977), 'duplicate') // 3000 - 1023: still inside
  assert.equal(d.check(1, 1976), 'tooOld')
  assert.equal(d.check(1, 3001), 'new')
  // a gap: 3003 skipped
  w.check(1, 3001); w.check(1, 3002); w.check(1, 3004)
  const withGap = w.encode()
  assert.ok(withGap.length > 128, 'the bitmap is kept while the gap is in the window')
  d = DedupWindow.decode(withGap)
  assert.equal(d.check(1, 3004), 'duplicate')
  assert.equal(d.check(1, 3003), 'new')
  assert.equal(d.check(1, 3003), 'duplicate')
  // once the gap has left the window, compact again
  for (let s = 3005; s <= 4100; s++) w.check(1, s)
  assert.ok(w.encode().length < 32)
  // a first contact in the middle of a device's seqs: lower unseen seqs are new
  const f = new DedupWindow(1024)
  f.check('b', 500)
  const fd = DedupWindow.decode(f.encode())
  assert.equal(fd.check('b', 499), 'new')
  assert.equal(fd.check('b', 500), 'duplicate')
  const fd2 = DedupWindow.decode(fd.encode())
  assert.equal(fd2.check('b', 499), 'duplicate')
  assert.equal(fd2.check('b', 498), 'new')
})
