/** EpochLru (ingest/sinks/leveldb-epochs.ts): in-memory dedup state capped per gateway, never evicting an epoch in use. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { EpochLru } from '../../ingest/sinks/leveldb-epochs.ts'

test('EpochLru: least recently used idle epochs go first, per gateway; busy ones wait', () => {
  const evicted: string[] = []
  const lru = new EpochLru(2, (gw, ep) => evicted.push(`${gw}/${ep}`))
  lru.acquire('g', 'e1')() // used and released
  const busy2 = lru.acquire('g', 'e2')
  lru.acquire('h', 'x1')()
  lru.acquire('g', 'e3')()
  assert.deepEqual(evicted, ['g/e1'], 'the oldest idle epoch of g; h is not affected')
  lru.acquire('g', 'e4')()
  // e2 is still in use: e3 (idle) goes although e2 is older
  assert.deepEqual(evicted, ['g/e1', 'g/e3'])
  busy2()
  busy2() // idempotent
  lru.acquire('g', 'e5')()
  assert.deepEqual(evicted, ['g/e1', 'g/e3', 'g/e2'])
  assert.equal(lru.size, 3) // g: e4, e5; h: x1
  assert.equal(lru.evicted, 3)
})

test('EpochLru: while every epoch is busy the cap is exceeded, then restored', () => {
  const evicted: string[] = []
  const lru = new EpochLru(1, (_gw, ep) => evicted.push(ep))
  const a = lru.acquire('g', 'a')
  const b = lru.acquire('g', 'b')
  assert.equal(lru.size, 2)
  assert.deepEqual(evicted, [])
  a(); b()
  lru.acquire('g', 'b')()
  assert.deepEqual(evicted, ['a'])
  assert.equal(lru.size, 1)
})
