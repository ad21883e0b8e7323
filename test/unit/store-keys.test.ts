/**
 * Item keys are part of the on-disk format: the same bytes as the original
 * `i!` + 4-digit partition + `!` + 16-digit seq, and sorting by seq.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { K, seqOfItemKey } from '../../gateway/store/keys.ts'

test('item keys keep their on-disk layout and sort numerically', () => {
  const seqs = [0, 1, 9, 10, 99, 12345, 2 ** 32, 2 ** 53 - 1]
  for (let i = 0; i < 2000; i++) seqs.push(Math.floor(Math.random() * 2 ** Math.floor(Math.random() * 53)))
  for (const p of [0, 1, 7, 63, 9999]) {
    const keys = seqs.map((s) => {
      const k = K.item(p, s)
      assert.equal(k, `i!${String(p).padStart(4, '0')}!${String(s).padStart(16, '0')}`)
      assert.equal(seqOfItemKey(k), s)
      assert.ok(k > K.itemPrefix(p) && k < K.itemEnd(p))
      return k
    })
    const bySeq = [...seqs].sort((a, b) => a - b).map((s) => K.item(p, s))
    assert.deepEqual([...keys].sort(), bySeq)
  }
})
