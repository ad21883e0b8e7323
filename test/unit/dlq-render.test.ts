/**
 * Issue #19 item 6: the dead-letter tools' rendering (gateway/dlq/render.ts) writes any
 * decoded value as JSON without throwing and without losing what it was.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeForView, jsonSafe } from '../../gateway/dlq/render.ts'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const roundTrip = (v: unknown): unknown => JSON.parse(JSON.stringify(jsonSafe(v)))

test('jsonSafe marks what JSON has no form for, and keeps the rest as it is', () => {
  assert.deepEqual(roundTrip({ a: 1, b: 'x', c: true, d: null, e: [1, 'y'] }), { a: 1, b: 'x', c: true, d: null, e: [1, 'y'] })
  assert.deepEqual(roundTrip(2n ** 70n), { $bigint: '1180591620717411303424' })
  assert.deepEqual(roundTrip(-5n), { $bigint: '-5' })
  assert.deepEqual(roundTrip(Buffer.from([1, 2])), { $base64: 'AQI=' })
  assert.deepEqual(roundTrip(new Uint8Array([255])), { $base64: '/w==' })
  assert.deepEqual(roundTrip(new Float64Array([1])), { $base64: 'AAAAAAAA8D8=', $type: 'Float64Array' })
  assert.deepEqual(roundTrip([undefined, NaN, Infinity, -Infinity]), [{ $undefined: true }, { $number: 'NaN' }, { $number: 'Infinity' }, { $number: '-Infinity' }])
  assert.deepEqual(roundTrip(new Map<unknown, unknown>([[1, 2n], [{ k: 1 }, 'v']])), { $map: [[1, { $bigint: '2' }], [{ k: 1 }, 'v']] })
  assert.deepEqual(roundTrip(new Set([1, 2])), { $set: [1, 2] })
  assert.deepEqual(roundTrip(new Date(0)), { $date: '1970-01-01T00:00:00.000Z' })
  assert.deepEqual(roundTrip(new Date(NaN)), { $date: 'invalid date' })
  assert.deepEqual(roundTrip(new Error('boom')), { $error: 'boom' })
  assert.deepEqual(roundTrip(/a+/), { $regexp: 'a+' })
  assert.deepEqual(roundTrip(Symbol('s')), { $unsupported: 'symbol' })
  class Tag { constructor (readonly value: unknown, readonly tag: number) {} }
  assert.deepEqual(roundTrip(new Tag(5n, 99)), { $tag: 99, value: { $bigint: '5' } })
})

test('jsonSafe: cycles, deep nesting and hostile keys cannot make JSON.stringify throw or misbehave', () => {
  const a: unknown[] = [1]
  a.push(a)
  assert.deepEqual(roundTrip(a), [1, { $cycle: true }])
  const shared = { x: 1 }
  assert.deepEqual(roundTrip([shared, shared]), [{ x: 1 }, { x: 1 }], 'a value seen twice is not a cycle')
  let deep: unknown = 0
  for (let i = 0; i < 10_000; i++) deep = [deep]
  assert.doesNotThrow(() => JSON.stringify(jsonSafe(deep)))
  assert.match(JSON.stringify(jsonSafe(deep)), /\$truncated/)
  const hostile = JSON.parse('{"__proto__":{"polluted":1},"toJSON":1,"toString":2,"constructor":3}') as object
  assert.deepEqual(JSON.parse(JSON.stringify(jsonSafe(hostile))), JSON.parse('{"__proto__":{"polluted":1},"toJSON":1,"toString":2,"constructor":3}'))
  assert.equal(({} as { polluted?: number }).polluted, undefined)
})

test('decodeForView: bignums up to 64 bytes decode; longer ones, other tags and bad bytes give an error, never a throw', () => {
  assert.deepEqual(decodeForView(hex('a1 66 76616c756573 a1 61 61 c2 41 01'), 'payload'), { value: { values: { a: 1n } } })
  assert.deepEqual(decodeForView(Buffer.concat([hex('c2 58 40'), Buffer.alloc(64, 0xff)]), 'payload').value, 2n ** 512n - 1n)
  const long = decodeForView(Buffer.concat([hex('c2 58 41'), Buffer.alloc(65, 0xff)]), 'payload')
  assert.equal(long.value, null)
  assert.match(long.error!, /bignum .* at most 64 bytes/)
  for (const [h, re] of [['d8 1b 82 65 4572726f72 61 78', /tag 27/], ['d8 1c 81 d8 1d 00', /tag 28/], ['d9 e000 81 05', /tag 57344/], ['', /no bytes/], ['ff', /break/], ['1a', /truncated/]] as const) {
    const d = decodeForView(hex(h), 'payload')
    assert.equal(d.value, null, h)
    assert.match(d.error!, re, h)
  }
  const bad = decodeForView(Buffer.from('{"values":'), 'payload')
  assert.equal(bad.value, null)
  assert.match(bad.error!, /JSON/)
  // a payload typed as text (`mosquitto_pub -m 21.5`) is shown as that text, without the
  // "3 trailing bytes after the CBOR item" of reading it as CBOR
  // (a lone 0x7a is such text too, "z", as the intake's reason says)
  for (const text of ['21.5', 'on', 'temp=21.5\n', 'héllo', 'z']) assert.deepEqual(decodeForView(Buffer.from(text), 'payload'), { value: { $text: text } }, text)
  // bytes that are not text still say why they do not decode
  assert.match(decodeForView(hex('32 00 01'), 'payload').error!, /trailing/)
  // a 64 KiB bignum is refused by its length, not decoded: fast
  const t0 = performance.now()
  decodeForView(Buffer.concat([hex('c2 5a 00010000'), Buffer.alloc(65536, 0xff)]), 'payload')
  assert.ok(performance.now() - t0 < 100)
})
