/**
 * ingest/sinks/leveldb-natural.ts: a natural key stays visible while a write holding it is
 * not durable, and after that as long as a disk read that began before the write completed
 * is in progress (such a read may have missed it); then it is forgotten.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { NaturalKeyWindow, type NaturalRead } from '../../ingest/sinks/leveldb-natural.ts'
import { itemOf } from '../../ingest/item.ts'
import type { ReadingCopy } from '../../ingest/sinks/types.ts'

const copy: ReadingCopy = { gateway: 'gw1', epoch: 'e1', p: 0, s: 1, ts: 5, rx: 6, values: { t: 1 } }

test('natural-key window: kept while not durable and while an older read is in progress, then forgotten', () => {
  const w = new NaturalKeyWindow()
  const early: NaturalRead = { from: 0 }
  w.beginRead(early)
  w.applied('n!a', copy)
  assert.deepEqual(w.get('n!a'), copy, 'with the copy that holds it')
  assert.ok(w.has('n!a'), 'not durable yet: visible')
  w.completed(['n!a'])
  assert.ok(w.has('n!a'), 'a read that began before the completion may have missed it')
  const late: NaturalRead = { from: 0 }
  w.beginRead(late)
  w.endRead(early)
  assert.equal(w.has('n!a'), false, 'every read in progress began after the completion: disk has it')
  w.endRead(late)
})

test('natural-key window: a failed write forgets only the keys that never became durable', () => {
  const w = new NaturalKeyWindow()
  const r: NaturalRead = { from: 0 }
  w.beginRead(r)
  w.applied('n!durable', copy)
  w.completed(['n!durable'])
  w.applied('n!lost', copy)
  w.dropVolatile()
  assert.ok(w.has('n!durable'))
  assert.equal(w.has('n!lost'), false)
  w.endRead(r)
})

test('itemOf names the eight fields of a wire item', () => {
  assert.deepEqual(itemOf([3, 17, 'dev1', 5, 'b1', 1000, 2000, { t: 1 }]), { p: 3, s: 17, device: 'dev1', seq: 5, boot: 'b1', ts: 1000, rx: 2000, values: { t: 1 } })
})
