import assert from 'node:assert/strict'
import { test } from 'node:test'
import { bootKey, decodeCursor, encodeCursor, hex, readingKey } from '../../ingest/sinks/leveldb-keys.ts'
import { parseBoot, parseDeviceQuery } from '../../ingest/query.ts'

test('cursor round-trips and is bound to its device', () => {
  const key = readingKey('dev-1', 'boot!x', 12, 99, hex('gw'), hex('ep'), 3, 400)
  const c = encodeCursor(key)
  assert.match(c, /^[A-Za-z0-9_-]+$/)
  assert.equal(decodeCursor(c, 'dev-1'), key)
  assert.throws(() => decodeCursor(c, 'dev-2'), { name: 'ValidationError', field: 'cursor' })
  assert.throws(() => decodeCursor('not a cursor!', 'dev-1'), { name: 'ValidationError', field: 'cursor' })
  assert.throws(() => decodeCursor(encodeCursor('r!dev-10!0'), 'dev-1'), { field: 'cursor' }, 'a device whose id extends another')
})

test('reading keys sort by (boot, seq): no boot, numeric boots, text boots; seq-less last', () => {
  const k = (boot: number | string | null, seq: number | null, rx = 0): string => readingKey('d', boot, seq, rx, hex('gw'), hex('e'), 0, 0)
  const ordered = [
    k(null, 1), k(null, null, 5),
    k(2, 1), k(2, 10), k(2, 0x10000000000000 - 1), k(2, null, 1), k(2, null, 2),
    k(10, 0),
    k('', 5), k('a', 1), k('a', 2), k('a!', 0), k('ab', 0), k('b', 0), k('é', 0)
  ]
  const sorted = [...ordered].sort()
  assert.deepEqual(sorted, ordered)
  assert.equal(bootKey(null), '0')
})

test('boot query parameter: digits are numbers, quotes force text, null means no boot', () => {
  assert.equal(parseBoot('12'), 12)
  assert.equal(parseBoot('"12"'), '12')
  assert.equal(parseBoot('null'), null)
  assert.equal(parseBoot('"null"'), 'null')
  assert.equal(parseBoot('abc'), 'abc')
  assert.throws(() => parseBoot('99999999999999999999'), { field: 'boot' })
})

test('device query parameters are checked and name the field', () => {
  assert.deepEqual(parseDeviceQuery('d1', new URLSearchParams('boot=3&fromSeq=7&limit=5&cursor=abc')), { device: 'd1', boot: 3, fromSeq: 7, limit: 5, cursor: 'abc' })
  assert.throws(() => parseDeviceQuery('d1', new URLSearchParams('fromSeq=7')), { field: 'fromSeq' })
  assert.throws(() => parseDeviceQuery('d1', new URLSearchParams('limit=0')), { field: 'limit' })
  assert.throws(() => parseDeviceQuery('d1', new URLSearchParams('limit=1e3')), { field: 'limit' })
  assert.throws(() => parseDeviceQuery('d1', new URLSearchParams('colour=red')), { field: 'colour' })
  assert.throws(() => parseDeviceQuery('bad id', new URLSearchParams('')), { field: 'deviceId' })
})
