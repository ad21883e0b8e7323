/**
 * ingest/sinks/leveldb-natural.ts: a pending copy stays visible while the write holding it
 * is not durable, and after that as long as a disk read that began before the write
 * completed is in progress (such a read may have missed it); then it is forgotten. A head
 * only grows; heads in use or with pending copies are never forgotten to keep the bound.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { NaturalKeyWindow, NO_SEQ, type NaturalRead } from '../../ingest/sinks/leveldb-natural.ts'
import { itemOf } from '../../ingest/item.ts'
import type { ReadingCopy } from '../../ingest/sinks/types.ts'

const copy: ReadingCopy = { gateway: 'gw1', epoch: 'e1', p: 0, s: 1, ts: 5, rx: 6, values: { t: 1 } }
const never = async (): Promise<number> => { throw new Error('the head is in memory: no disk read') }

test('natural-key window: a copy is kept while not durable and while an older read is in progress, then forgotten', async () => {
  const w = new NaturalKeyWindow()
  const early: NaturalRead = { from: 0 }
  w.beginRead(early)
  const h = await w.load('dev1', 1, async () => 7)
  assert.equal(h.max, 7, 'loaded from disk')
  assert.equal(await w.load('dev1', 1, never), h, 'then from memory')
  const e = w.applied(h, 9, 'f', copy)
  assert.equal(h.max, 9, 'the head grows with what is applied')
  assert.deepEqual(h.find(9, 'f'), copy, 'not durable yet: visible with its copy')
  assert.equal(h.find(9, 'other fleet'), undefined)
  w.completed([e])
  assert.deepEqual(h.find(9, 'f'), copy, 'a read that began before the completion may have missed it')
  const late: NaturalRead = { from: 0 }
  w.beginRead(late)
  w.endRead(early)
  assert.equal(h.find(9, 'f'), undefined, 'every read in progress began after the completion: disk has it')
  assert.equal(h.max, 9, 'the head stays')
  assert.equal(w.pendingCopies, 0)
  w.endRead(late)
})

test('natural-key window: boots 1 and "1" and none are three heads; a failed write forgets everything', async () => {
  const w = new NaturalKeyWindow()
  const r: NaturalRead = { from: 0 }
  w.beginRead(r)
  const a = await w.load('d', 1, async () => 1)
  const b = await w.load('d', '1', async () => 2)
  const c = await w.load('d', null, async () => NO_SEQ)
  assert.deepEqual([a.max, b.max, c.max], [1, 2, NO_SEQ])
  w.applied(a, 5, 'f', copy)
  w.drop()
  assert.equal(w.head('d', 1), undefined)
  assert.equal(w.size, 0)
  assert.equal(w.pendingCopies, 0)
  w.endRead(r)
})

test('natural-key window: past its bound it forgets heads that are idle, never one in use or with pending copies', async () => {
  const w = new NaturalKeyWindow(10)
  const r: NaturalRead = { from: 0 }
  w.beginRead(r)
  const busy = await w.load('busy', 1, async () => 0)
  busy.users++
  const held = await w.load('held', 1, async () => 0)
  w.applied(held, 1, 'f', copy)
  for (let i = 0; i < 20; i++) await w.load(`d${i}`, 1, async () => i)
  w.endRead(r)
  assert.ok(w.size <= 10, `size ${w.size}`)
  assert.equal(w.head('busy', 1), busy)
  assert.equal(w.head('held', 1), held)
})

test('itemOf names the eight fields of a wire item', () => {
  assert.deepEqual(itemOf([3, 17, 'dev1', 5, 'b1', 1000, 2000, { t: 1 }]), { p: 3, s: 17, device: 'dev1', seq: 5, boot: 'b1', ts: 1000, rx: 2000, values: { t: 1 } })
})
