import assert from 'node:assert/strict'
import { test } from 'node:test'
import { GroupCommitter, type Op } from '../../ingest/sinks/group-commit.ts'

const put = (key: string): Op => ({ type: 'put', key, value: '' })

test('concurrent submissions share one write, in order, with the final ops last', async () => {
  const writes: string[][] = []
  const gc = new GroupCommitter(async (ops) => { writes.push(ops.map((o) => o.key)) }, () => [put('stats')], () => {})
  await Promise.all([gc.submit([put('a')]), gc.submit([put('b'), put('c')]), gc.submit([])])
  assert.deepEqual(writes, [['a', 'b', 'c', 'stats']])
  await gc.submit([put('d')])
  assert.deepEqual(writes[1], ['d', 'stats'])
})

test('nothing resolves before its write is done; later submissions wait for earlier writes', async () => {
  let release!: () => void
  const gate = new Promise<void>((r) => { release = r })
  const order: string[] = []
  let first = true
  const gc = new GroupCommitter(async (ops) => {
    if (first) { first = false; await gate }
    order.push(`write ${ops.map((o) => o.key).join(',')}`)
  }, () => [], () => {})
  const a = gc.submit([put('a')]).then(() => order.push('a done'))
  await new Promise((r) => setImmediate(r))
  await new Promise((r) => setImmediate(r))
  const b = gc.submit([put('b')]).then(() => order.push('b done'))
  await new Promise((r) => setTimeout(r, 5))
  assert.deepEqual(order, [], 'the first write is still blocked')
  release()
  await Promise.all([a, b])
  const at = (e: string): number => { const i = (order as string[]).indexOf(e); assert.ok(i >= 0, e); return i }
  assert.ok(at('write a') < at('a done'))
  assert.ok(at('write b') < at('b done'))
  assert.ok(at('write a') < at('write b'), 'groups are written in order')
  assert.ok(at('a done') < at('b done'))
})

test('a failed write rejects its group and everything queued behind it, after onFailure', async () => {
  let release!: () => void
  const gate = new Promise<void>((r) => { release = r })
  const events: string[] = []
  let n = 0
  const gc = new GroupCommitter(async () => {
    n++
    if (n === 1) { await gate; throw new Error('disk full') }
  }, () => [], () => { events.push('onFailure') })
  const a = gc.submit([put('a')]).then(() => 'ok', (e: Error) => { events.push('a rejected'); return e.message })
  await new Promise((r) => setImmediate(r))
  await new Promise((r) => setImmediate(r))
  const b = gc.submit([put('b')]).then(() => 'ok', (e: Error) => { events.push('b rejected'); return e.message })
  release()
  assert.deepEqual(await Promise.all([a, b]), ['disk full', 'disk full'])
  assert.deepEqual(events, ['onFailure', 'a rejected', 'b rejected'])
  assert.equal(await gc.submit([put('c')]).then(() => 'ok'), 'ok', 'the committer works again afterwards')
  await gc.idle()
})
