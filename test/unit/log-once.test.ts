/**
 * The one "log once per key" memory (common/log-once.ts) the broker's offender log, hook
 * guard, unstored-topic notes and mapping refusals share: a key is first once, the memory
 * never holds more than its bound, and the two ways of being full behave as their callers
 * rely on (forget: an offender after a flood is logged again; stop: nothing new is logged).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { LogOnce, WhenFull } from '../../common/index.ts'

test('a key is first once, then not, until forgotten', () => {
  const once = new LogOnce(10)
  assert.equal(once.first('a'), true)
  assert.equal(once.first('a'), false)
  assert.equal(once.first('b'), true)
  assert.equal(once.size, 2)
  assert.deepEqual([...once.keys()], ['a', 'b'])
})

test('forget: past the bound every key is forgotten and the new one kept, so an old offender is logged again', () => {
  const once = new LogOnce(3)
  for (const k of ['a', 'b', 'c']) assert.equal(once.first(k), true)
  assert.equal(once.first('d'), true, 'a new key past the bound is still logged')
  assert.equal(once.size, 1, 'the memory never holds more than its bound')
  assert.equal(once.first('a'), true, 'forgotten, so logged again')
  assert.equal(once.first('d'), false)
})

test('stop: past the bound no new key is kept or logged, the remembered ones stay', () => {
  const once = new LogOnce(2, WhenFull.Stop)
  assert.equal(once.first('a'), true)
  assert.equal(once.first('b'), true)
  assert.equal(once.first('c'), false)
  assert.equal(once.first('c'), false)
  assert.equal(once.first('a'), false)
  assert.equal(once.size, 2)
})
