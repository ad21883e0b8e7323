import assert from 'node:assert/strict'
import { test } from 'node:test'
import { encodeCbor, wireUint } from '../../protocol/cbor.ts'
import { DecodeError, EdgeError, ValidationError } from '../../protocol/errors.ts'
import { decodeReading, type Reading } from '../../protocol/reading.ts'

const MAX = 16 * 1024
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const enc = (v: unknown): Buffer => encodeCbor(v)
/** A definite CBOR map from already-encoded values, so a test controls every byte. */
const cmap = (pairs: [string, Buffer][]): Buffer =>
  Buffer.concat([Buffer.from([0xa0 | pairs.length]), ...pairs.flatMap(([k, v]) => [enc(k), v])])
const ONE = cmap([['a', hex('01')]]) // values { a: 1 }
const json = (s: string): Buffer => Buffer.from(s, 'utf8')

/** Asserts decodeReading refuses `payload` with `Kind`; a ValidationError must name `field`. */
function rejects (payload: Uint8Array, Kind: typeof DecodeError | typeof ValidationError, field?: string | RegExp, max = MAX): EdgeError {
  let caught: unknown
  try { decodeReading(payload, max) } catch (err) { caught = err }
  assert.ok(caught instanceof Kind, `expected ${Kind.name} for 0x${Buffer.from(payload).toString('hex').slice(0, 48)}, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`)
  if (field !== undefined) {
    const f = (caught as ValidationError).field
    if (typeof field === 'string') assert.equal(f, field, caught.message)
    else assert.match(f, field, caught.message)
    assert.ok(caught.message.includes(f), `message "${caught.message}" names ${f}`)
  }
  return caught
}
const values = (r: Reading): Record<string, unknown> => ({ ...r.values })

test('CBOR reading with every field and value type', () => {
  const payload = cmap([
    ['seq', enc(42)],
    ['boot', enc(7)],
    ['ts', hex('1b 0000018c8e1f0000')], // uint64 as real devices send it
    ['values', cmap([
      ['int', enc(-5)], ['f16', hex('f9 3e00')], ['f32', hex('fa 41a80000')], ['f64', enc(21.25)],
      ['on', hex('f5')], ['off', hex('f4')], ['name', enc('kitchen')], ['zero', hex('f9 8000')]
    ])]
  ])
  const r = decodeReading(payload, MAX)
  assert.equal(r.seq, 42)
  assert.equal(r.boot, 7)
  assert.equal(r.ts, 1_703_191_445_504)
  assert.equal(typeof r.ts, 'number')
  assert.deepEqual(values(r), { int: -5, f16: 1.5, f32: 21, f64: 21.25, on: true, off: false, name: 'kitchen', zero: -0 })
})

test('CBOR uint64 (0x1b) seq, ts and boot decode as numbers, not BigInt', () => {
  const r = decodeReading(cmap([['seq', hex('1b 0000000000000005')], ['boot', enc(wireUint(2 ** 40))], ['ts', enc(wireUint(2 ** 41))], ['values', ONE]]), MAX)
  assert.deepEqual([r.seq, r.boot, r.ts], [5, 2 ** 40, 2 ** 41])
  for (const v of [r.seq, r.boot, r.ts]) assert.equal(typeof v, 'number')
  assert.equal(decodeReading(cmap([['seq', hex('1b 001fffffffffffff')], ['values', ONE]]), MAX).seq, Number.MAX_SAFE_INTEGER)
})

test('boot may be text of up to 64 bytes', () => {
  assert.equal(decodeReading(cmap([['boot', enc('b-2024-01-01')], ['values', ONE]]), MAX).boot, 'b-2024-01-01')
  assert.equal(decodeReading(cmap([['boot', enc('x'.repeat(64))], ['values', ONE]]), MAX).boot, 'x'.repeat(64))
  assert.equal(decodeReading(cmap([['boot', enc('é'.repeat(32))], ['values', ONE]]), MAX).boot, 'é'.repeat(32))
})

test('only values is required; absent and null fields are null', () => {
  const min = decodeReading(cmap([['values', ONE]]), MAX)
  assert.deepEqual([min.seq, min.boot, min.ts, values(min)], [null, null, null, { a: 1 }])
  const r = decodeReading(cmap([['seq', hex('f6')], ['boot', hex('f6')], ['ts', hex('f6')], ['values', ONE]]), MAX)
  assert.deepEqual([r.seq, r.boot, r.ts], [null, null, null])
})

test('JSON reading with every field type', () => {
  const r = decodeReading(json('{"seq":3,"boot":"b1","ts":1703191445504,"values":{"t":21.5,"n":-3,"on":true,"s":"ok"}}'), MAX)
  assert.deepEqual([r.seq, r.boot, r.ts], [3, 'b1', 1_703_191_445_504])
  assert.deepEqual(values(r), { t: 21.5, n: -3, on: true, s: 'ok' })
  assert.equal(decodeReading(json('{"boot":12,"values":{"a":1}}'), MAX).boot, 12)
})

test('JSON may start with whitespace before {', () => {
  for (const ws of [' ', '\t', '\r\n', '\n\n  \t ']) {
    assert.deepEqual(values(decodeReading(json(`${ws}{"values":{"a":1}}`), MAX)), { a: 1 }, JSON.stringify(ws))
  }
  assert.equal(decodeReading(json('{"values":{"a":1}}\n'), MAX).values.a, 1)
})

test('JSON and CBOR of the same reading decode alike', () => {
  const obj = { seq: 9, boot: 'x', ts: 1000, values: { a: 1.5, b: false, c: 'ü' } }
  assert.deepEqual(decodeReading(json(JSON.stringify(obj)), MAX), decodeReading(enc(obj), MAX))
})

test('empty payload is a DecodeError', () => {
  rejects(new Uint8Array(0), DecodeError)
})

test('payload over maxPayloadBytes is refused before decoding; exactly the limit passes', () => {
  const p = cmap([['values', cmap([['s', enc('x'.repeat(200))]])]])
  assert.doesNotThrow(() => decodeReading(p, p.length))
  const e = rejects(p, ValidationError, 'payload', p.length - 1)
  assert.match(e.message, /exceeds maxPayloadBytes/)
  // even a payload that is garbage is refused for its size first
  rejects(Buffer.alloc(MAX + 1, 0xff), ValidationError, 'payload')
})

test('truncated CBOR: every strict prefix of a valid payload is a DecodeError', () => {
  const p = cmap([['seq', enc(wireUint(2 ** 40))], ['boot', enc('b')], ['ts', hex('1b 0000018c8e1f0000')], ['values', cmap([['t', enc(21.25)], ['s', enc('abc')]])]])
  assert.doesNotThrow(() => decodeReading(p, MAX))
  for (let n = 1; n < p.length; n++) rejects(p.subarray(0, n), DecodeError)
})

test('deep nesting (10,000 arrays, maps, tags) fails fast with a DecodeError', () => {
  const deep = [
    Buffer.concat([Buffer.alloc(10_000, 0x81), hex('00')]),
    Buffer.concat([Buffer.alloc(10_000, 0x9f), hex('00'), Buffer.alloc(10_000, 0xff)]),
    Buffer.concat([Buffer.from('a16161'.repeat(10_000), 'hex'), hex('00')]),
    Buffer.concat([Buffer.alloc(10_000, 0xc6), hex('00')])
  ]
  const t0 = performance.now()
  for (const d of deep) {
    rejects(d, DecodeError, undefined, 1e6)
    rejects(Buffer.concat([hex('a1'), enc('values'), hex('a1'), enc('a'), d]), DecodeError, undefined, 1e6)
  }
  // JSON: V8's parser copes; the nested value is refused by type
  rejects(json(`{"values":{"a":${'['.repeat(10_000)}${']'.repeat(10_000)}}}`), ValidationError, 'values.a', 1e6)
  rejects(json(`{"values":${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}}`), ValidationError, /^values/, 1e6)
  assert.ok(performance.now() - t0 < 2000)
})

test('huge declared lengths (2^32, 2^64 items or bytes) fail fast without allocating', () => {
  const heads = ['9a ffffffff', '9b ffffffffffffffff', '9b 0000000100000000', 'ba ffffffff', 'bb ffffffffffffffff',
    '5a ffffffff', '5b ffffffffffffffff', '7a ffffffff', '7b ffffffffffffffff', '7b 0000000100000000']
  const rss0 = process.memoryUsage().rss
  const t0 = performance.now()
  for (const h of heads) {
    rejects(hex(h), DecodeError) // top level
    rejects(cmap([['values', cmap([['a', hex(h)]])]]), DecodeError) // as a value
    rejects(Buffer.concat([hex('a1'), enc('values'), hex(h)]), DecodeError) // as the values map itself
  }
  assert.ok(performance.now() - t0 < 200, `took ${performance.now() - t0} ms`)
  assert.ok(process.memoryUsage().rss - rss0 < 64 * 1024 * 1024)
})

test('NaN and ±Infinity in half, single and double precision are refused; -0 is a finite number', () => {
  const nonFinite = ['f9 7e00', 'f9 7c00', 'f9 fc00', 'f9 7c01', 'fa 7fc00000', 'fa 7f800000', 'fa ff800000', 'fb 7ff8000000000000', 'fb 7ff0000000000000', 'fb fff0000000000000']
  for (const h of nonFinite) {
    const e = rejects(cmap([['values', cmap([['t', hex(h)]])]]), ValidationError, 'values.t')
    assert.match(e.message, /finite/)
    rejects(cmap([['seq', hex(h)], ['values', ONE]]), ValidationError, 'seq')
    rejects(cmap([['ts', hex(h)], ['values', ONE]]), ValidationError, 'ts')
    rejects(cmap([['boot', hex(h)], ['values', ONE]]), ValidationError, 'boot')
  }
  rejects(json('{"values":{"t":1e999}}'), ValidationError, 'values.t')
  rejects(json('{"values":{"t":-1e999}}'), ValidationError, 'values.t')
  rejects(json('{"values":{"t":NaN}}'), DecodeError) // not JSON at all
  for (const h of ['f9 8000', 'fa 80000000', 'fb 8000000000000000']) {
    const v = decodeReading(cmap([['values', cmap([['t', hex(h)]])]]), MAX).values.t
    assert.ok(Object.is(v, -0), h)
  }
})

test('seq: 2^53 and above, negative, fractional, or not a number are refused', () => {
  const bad = ['1b 0020000000000000', '1b ffffffffffffffff', '20', '3b 0000000100000000', 'fb 3ff8000000000000', '61 31', 'f5', '80', 'a0', '41 01']
  for (const h of bad) rejects(cmap([['seq', hex(h)], ['values', ONE]]), ValidationError, 'seq')
  // a tagged seq (bignum, date) is refused before decoding
  for (const h of ['c2 41 01', 'c1 01']) rejects(cmap([['seq', hex(h)], ['values', ONE]]), DecodeError)
  for (const s of ['9007199254740992', '-1', '1.5', '"1"', 'true', '[1]', '{}']) rejects(json(`{"seq":${s},"values":{"a":1}}`), ValidationError, 'seq')
  assert.equal(decodeReading(json('{"seq":9007199254740991,"values":{"a":1}}'), MAX).seq, Number.MAX_SAFE_INTEGER)
  assert.equal(decodeReading(cmap([['seq', hex('00')], ['values', ONE]]), MAX).seq, 0)
})

test('wrong types for boot, ts and values are refused naming the field', () => {
  for (const h of ['20', 'fb 3ff8000000000000', 'f5', '80', 'a0', '41 01', '1b 0020000000000000']) {
    rejects(cmap([['boot', hex(h)], ['values', ONE]]), ValidationError, 'boot')
    rejects(cmap([['ts', hex(h)], ['values', ONE]]), ValidationError, 'ts')
  }
  rejects(cmap([['ts', enc('2024-01-01')], ['values', ONE]]), ValidationError, 'ts')
  for (const v of ['80', '01', enc('x').toString('hex'), 'f5', 'f6', '41 01', 'a0']) {
    rejects(cmap([['values', hex(v)]]), ValidationError, 'values')
  }
  rejects(cmap([['seq', enc(1)]]), ValidationError, 'values')
  for (const v of ['f6', 'f7', '80', '81 01', 'a0', 'a1 61 61 01', '41 01']) {
    const e = rejects(cmap([['values', cmap([['x', hex(v)]])]]), ValidationError, 'values.x')
    assert.match(e.message, /number, boolean or text/)
  }
  rejects(json('{"values":{"x":null}}'), ValidationError, 'values.x')
  rejects(json('{"values":[1,2]}'), ValidationError, 'values')
  rejects(json('{"values":{}}'), ValidationError, 'values')
  rejects(json('{"boot":-1,"values":{"a":1}}'), ValidationError, 'boot')
  rejects(json('{"ts":"2024-01-01","values":{"a":1}}'), ValidationError, 'ts')
})

test('values: 64 entries pass, 65 are refused naming the limit', () => {
  const n = (k: number): [string, Buffer][] => Array.from({ length: k }, (_, i) => [`v${i}`, enc(i)])
  const big = (k: number): Buffer => Buffer.concat([hex('a1'), enc('values'), hex('b8'), Buffer.from([k]), ...n(k).flatMap(([a, b]) => [enc(a), b])])
  assert.equal(Object.keys(decodeReading(big(64), MAX).values).length, 64)
  const e = rejects(big(65), ValidationError, 'values')
  assert.match(e.message, /65 entries, at most 64/)
  const j = JSON.stringify({ values: Object.fromEntries(n(65).map(([k], i) => [k, i])) })
  rejects(json(j), ValidationError, 'values')
})

test('values: 10,000 entries are refused quickly (CBOR by item count, JSON by entry count)', () => {
  const entries = Array.from({ length: 10_000 }, (_, i) => [`v${i}`, i] as const)
  const cbor = enc({ values: Object.fromEntries(entries) })
  const t0 = performance.now()
  const e = rejects(cbor, DecodeError, undefined, 1e6)
  assert.match(e.message, /items/)
  rejects(json(JSON.stringify({ values: Object.fromEntries(entries) })), ValidationError, 'values', 1e6)
  rejects(cbor, ValidationError, 'payload') // and at the default size limit, by size
  assert.ok(performance.now() - t0 < 500)
})

test('value names must match ^[A-Za-z0-9_.:-]{1,64}$', () => {
  assert.ok('a'.repeat(64) in decodeReading(cmap([['values', cmap([['a'.repeat(64), enc(1)]])]]), MAX).values)
  assert.deepEqual(values(decodeReading(cmap([['values', cmap([['A.b_c:d-9', enc(1)]])]]), MAX)), { 'A.b_c:d-9': 1 })
  for (const name of ['', 'a'.repeat(65), 'a b', 'a/b', 'ü', 'a\n', 'a$', '😀', 'a\u0000']) {
    const e = rejects(cmap([['values', cmap([[name, enc(1)]])]]), ValidationError, `values.${name}`)
    assert.match(e.message, /name must match/)
  }
  // a very long bad name is cut in the field path, not echoed whole
  const long = 'x '.repeat(4000)
  const e = rejects(cmap([['values', cmap([[long, enc(1)]])]]), ValidationError, /^values\./)
  assert.ok(e.message.length < 300)
})

test('text values: at most 256 UTF-8 bytes (bytes, not characters)', () => {
  const ok = ['a'.repeat(256), 'é'.repeat(128), '😀'.repeat(64), '€'.repeat(85) + 'a']
  for (const s of ok) assert.equal(decodeReading(cmap([['values', cmap([['s', enc(s)]])]]), MAX).values.s, s)
  const bad = ['a'.repeat(257), 'é'.repeat(129) /* 129 chars, 258 bytes */, '😀'.repeat(65) /* 130 UTF-16 units, 260 bytes */, '€'.repeat(86)]
  for (const s of bad) {
    assert.ok(s.length <= 258)
    const e = rejects(cmap([['values', cmap([['s', enc(s)]])]]), ValidationError, 'values.s')
    assert.match(e.message, /256 bytes/)
    rejects(json(JSON.stringify({ values: { s } })), ValidationError, 'values.s')
  }
})

test('boot text: at most 64 UTF-8 bytes', () => {
  for (const s of ['x'.repeat(65), 'é'.repeat(33) /* 33 chars, 66 bytes */, '😀'.repeat(17)]) {
    const e = rejects(cmap([['boot', enc(s)], ['values', ONE]]), ValidationError, 'boot')
    assert.match(e.message, /64 bytes/)
    rejects(json(JSON.stringify({ boot: s, values: { a: 1 } })), ValidationError, 'boot')
  }
})

test('unknown fields are refused by name', () => {
  rejects(cmap([['values', ONE], ['temp', enc(1)]]), ValidationError, 'temp')
  rejects(cmap([['Seq', enc(1)], ['values', ONE]]), ValidationError, 'Seq')
  rejects(Buffer.concat([hex('a2'), enc('values'), ONE, hex('01 02')]), ValidationError, 'payload') // integer key: not a name at all
  const e = rejects(json('{"values":{"a":1},"extra":null}'), ValidationError, 'extra')
  assert.match(e.message, /unknown field/)
})

test('JSON __proto__ keys cannot pollute prototypes', () => {
  const before = Object.getOwnPropertyNames(Object.prototype).sort()
  rejects(json('{"__proto__":{"polluted":1},"values":{"a":1}}'), ValidationError, '__proto__')
  rejects(json('{"values":{"__proto__":{"polluted":1}}}'), ValidationError, 'values.__proto__')
  rejects(json('{"values":{"a":1,"constructor":{"prototype":{"polluted":1}}}}'), ValidationError, 'values.constructor')
  // a plain number under the name __proto__ is refused with a reason: cbor-x (the upstream
  // decoder too) renames the key to __proto_, so keeping it would alter the reading later
  rejects(json('{"values":{"__proto__":5,"a":1}}'), ValidationError, 'values.__proto__')
  // CBOR: the same key never reaches a prototype, and its renamed form is refused as well
  rejects(Buffer.concat([hex('a1'), enc('values'), hex('a2'), enc('__proto__'), hex('05'), enc('a'), hex('01')]), ValidationError, 'values.__proto_')
  rejects(Buffer.concat([hex('a2'), enc('__proto__'), enc({ seq: 1 }), enc('values'), ONE]), ValidationError, /__proto__?/)
  assert.equal(({} as Record<string, unknown>).polluted, undefined)
  assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), before)
})

test('indefinite-length maps and arrays are valid CBOR and decode', () => {
  const p = Buffer.concat([hex('bf'), enc('seq'), enc(1), enc('values'), hex('bf'), enc('a'), enc(2), hex('ff ff')])
  const r = decodeReading(p, MAX)
  assert.deepEqual([r.seq, r.boot, r.ts, values(r)], [1, null, null, { a: 2 }])
  // an indefinite array as a value is still the wrong type
  rejects(Buffer.concat([hex('a1'), enc('values'), hex('a1'), enc('a'), hex('9f 01 ff')]), ValidationError, 'values.a')
  // a missing break or an odd indefinite map is malformed
  rejects(Buffer.concat([hex('bf'), enc('values'), ONE]), DecodeError)
  rejects(Buffer.concat([hex('bf'), enc('values'), hex('ff')]), DecodeError)
})

test('indefinite-length text decodes or is a DecodeError, never a crash', () => {
  const p = Buffer.concat([hex('a1'), enc('values'), hex('a1'), enc('s'), hex('7f 62 6162 61 63 ff')])
  let r: Reading | undefined
  try { r = decodeReading(p, MAX) } catch (err) { assert.ok(err instanceof DecodeError, String(err)) }
  if (r) assert.equal(r.values.s, 'abc')
})

test('tags anywhere are refused before decoding, naming the tag and its offset', () => {
  const tagged: [string, string][] = [['seq', 'c2 41 05'], ['seq', 'c3 41 05'], ['ts', 'c1 1a 65000000'], ['boot', 'd8 20 61 78'], ['boot', 'd9 0102 82 01 02'],
    ['ts', Buffer.concat([hex('c0'), enc('2024-01-01T00:00:00Z')]).toString('hex')], ['values', 'd9 0103 a1 61 61 01']]
  for (const [field, h] of tagged) {
    const e = rejects(cmap(field === 'values' ? [['values', hex(h)]] : [[field, hex(h)], ['values', ONE]]), DecodeError)
    assert.match(e.message, /^CBOR tag \d+ at byte \d+ is not accepted/)
  }
  for (const v of ['c1 01', 'c2 41 01', 'd8 1b 82 65 4572726f72 61 78']) {
    const e = rejects(cmap([['values', cmap([['x', hex(v)]])]]), DecodeError)
    assert.match(e.message, /^CBOR tag (1|2|27) at byte 11 is not accepted/)
  }
  // the self-describe tag 55799 wrapping the whole payload: refused too (no device sends it)
  assert.match(rejects(Buffer.concat([hex('d9 d9f7'), cmap([['values', ONE]])]), DecodeError).message, /CBOR tag 55799 at byte 0 is not accepted/)
})

test('trailing bytes after the CBOR item are refused', () => {
  const e = rejects(Buffer.concat([cmap([['values', ONE]]), hex('00')]), DecodeError)
  assert.match(e.message, /trailing/)
  rejects(Buffer.concat([cmap([['values', ONE]]), cmap([['values', ONE]])]), DecodeError)
  rejects(json('{"values":{"a":1}} {"values":{"a":1}}'), DecodeError)
})

test('a top-level array, string, number, bool or null is not a reading', () => {
  for (const v of [[1], 'values', 5, -1, 1.5, true, null, Buffer.from('{}')]) {
    const e = rejects(enc(v), ValidationError, 'payload')
    assert.match(e.message, /map/)
  }
  rejects(json('[{"values":{"a":1}}]'), DecodeError) // '[' is not JSON's '{': read as CBOR, malformed
  rejects(json('"x"'), DecodeError)
  rejects(json('{"values":'), DecodeError)
  rejects(json('{'), DecodeError)
})

// What is stored is what the device sent, or a dead letter saying why: cbor-x used to turn
// a map key 1 into the value name "1", keep the last of two equal keys, and put U+FFFD in
// place of invalid UTF-8; each reached the store as a reading the device never sent.

test('map keys that are not text are refused naming the map, at the top level and in values', () => {
  const keys: [string, RegExp][] = [['01', /the integer 1,/], ['20', /the integer -1,/], ['f5', /true,/], ['f6', /null,/], ['fb 3ff0000000000000', /a float,/], ['41 61', /a byte string,/], ['80', /an array,/]]
  for (const [k, what] of keys) {
    const inValues = Buffer.concat([hex('a1'), enc('values'), hex('a1'), hex(k), hex('02')])
    assert.match(rejects(inValues, ValidationError, 'values').message, what)
    assert.match(rejects(inValues, ValidationError, 'values').message, /^values: map key at byte 9 is .* not text$/)
    const top = Buffer.concat([hex('a2'), hex(k), hex('01'), enc('values'), ONE])
    assert.match(rejects(top, ValidationError, 'payload').message, /^payload: map key at byte 1 is .* not text$/)
  }
  // also inside an indefinite-length map, and after a valid entry
  rejects(Buffer.concat([hex('a1'), enc('values'), hex('bf'), enc('a'), hex('01 01 02 ff')]), ValidationError, 'values')
})

test('a key twice in one map is refused naming it, not resolved to the last one', () => {
  const e = rejects(Buffer.concat([hex('a1'), enc('values'), hex('a2'), enc('t'), hex('01'), enc('t'), hex('02')]), ValidationError, 'values')
  assert.match(e.message, /map key "t" at byte \d+ appears twice/)
  assert.match(rejects(Buffer.concat([hex('a3'), enc('seq'), hex('01'), enc('values'), ONE, enc('seq'), hex('02')]), ValidationError, 'payload').message, /"seq" .* twice/)
  // equal names in different maps are no duplicate
  assert.deepEqual(values(decodeReading(Buffer.concat([hex('a1'), enc('values'), hex('a2'), enc('values'), hex('01'), enc('t'), hex('02')]), MAX)), { values: 1, t: 2 })
})

test('text that is not valid UTF-8 is refused naming the field (JSON: its place), valid UTF-8 of every length passes', () => {
  const bad = ['ff', 'c3 28', 'c0 80', 'e0 80 80', 'ed a0 80', 'f4 90 80 80', 'f8 88 80 80 80', 'e2 82', 'c3']
  for (const b of bad) {
    const t = Buffer.concat([hex('6' + (hex(b).length).toString(16)), hex(b)])
    rejects(cmap([['values', cmap([['t', t]])]]), ValidationError, 'values.t')
    rejects(cmap([['boot', t], ['values', ONE]]), ValidationError, 'boot')
    const asName = Buffer.concat([hex('a1'), enc('values'), hex('a1'), t, hex('01')])
    assert.match(rejects(asName, ValidationError, 'values').message, /map key at byte 9 is not valid UTF-8/)
    const j = Buffer.concat([json('{"values":{"t":"a'), hex(b), json('"}}')])
    assert.match(rejects(j, DecodeError).message, /^malformed JSON: not valid UTF-8 at byte 17, after "\{\\"values\\":\{\\"t\\":\\"a"/)
  }
  for (const s of ['é', '€', '😀', '\u{10ffff}', '\ufffd']) {
    assert.equal(decodeReading(cmap([['values', cmap([['t', enc(s)]])]]), MAX).values.t, s)
    assert.equal(decodeReading(json(`{"values":{"t":"${s}"}}`), MAX).values.t, s)
  }
})
