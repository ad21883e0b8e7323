import assert from 'node:assert/strict'
import { isUtf8 } from 'node:buffer'
import { test } from 'node:test'
import { cborHead, decodeTrusted, decodeUntrusted, encodeCbor, invalidUtf8At, scanCbor, wireUint, type ScanLimits } from '../../protocol/cbor.ts'
import { DecodeError, ValidationError } from '../../protocol/errors.ts'
import { mulberry32 } from '../../common/index.ts'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const LIM = { maxDepth: 16 }
/** Structure tests that nest through tags: the tags they use, allowed (untrusted input allows none). */
const TAGS = { maxDepth: 16, allowTags: [0, 1, 6, 23, 32, 259, 0x10000, 0x100000000] }

function scanFails (buf: Uint8Array, re: RegExp, limits: ScanLimits = LIM): void {
  assert.throws(() => scanCbor(buf, limits), (err: unknown) => {
    assert.ok(err instanceof DecodeError, `expected DecodeError, got ${String(err)}`)
    assert.match(err.message, re)
    return true
  }, `0x${Buffer.from(buf).toString('hex').slice(0, 40)}`)
}

/**
 * An independent walker (no cbor-x, no scanCbor) over well-formed CBOR: calls `visit` with
 * the major type, additional info and argument of every head, returns the end offset.
 */
function walk (buf: Uint8Array, visit: (major: number, ai: number, arg: bigint, at: number) => void, pos = 0): number {
  const ib = buf[pos]!
  const major = ib >> 5
  const ai = ib & 31
  let arg = BigInt(ai)
  let p = pos + 1
  if (ai >= 24 && ai <= 27) {
    const n = 1 << (ai - 24)
    arg = 0n
    for (let i = 0; i < n; i++) arg = (arg << 8n) | BigInt(buf[p + i]!)
    p += n
  }
  visit(major, ai, arg, pos)
  if (major === 7) return p // simple values and floats: the argument was the whole body
  if (ai === 31) {
    while (buf[p] !== 0xff) p = walk(buf, visit, p)
    return p + 1
  }
  if (major === 2 || major === 3) return p + Number(arg)
  if (major === 4) { for (let i = 0n; i < arg; i++) p = walk(buf, visit, p); return p }
  if (major === 5) { for (let i = 0n; i < 2n * arg; i++) p = walk(buf, visit, p); return p }
  if (major === 6) return walk(buf, visit, p)
  return p
}

test('scanCbor accepts every major type at every additional-info width', () => {
  const ok = [
    // 0: unsigned, 1: negative: immediate, 1, 2, 4, 8 byte arguments
    '00', '17', '18 18', '18 ff', '19 0100', '1a 00010000', '1b 0000000100000000', '1b ffffffffffffffff',
    '20', '37', '38 ff', '39 ffff', '3a ffffffff', '3b ffffffffffffffff',
    // 2: bytes, 3: text
    '40', '43 010203', '58 03 010203', '59 0003 010203', '5a 00000003 010203', '5b 0000000000000003 010203',
    '60', '63 616263', '78 03 616263', '79 0003 616263', '7a 00000003 616263', '7b 0000000000000003 616263',
    // 4: arrays, 5: maps
    '80', '82 01 02', '98 02 01 02', '99 0002 01 02', '9a 00000002 01 02', '9b 0000000000000002 01 02',
    'a0', 'a1 01 02', 'b8 01 01 02', 'b9 0001 01 02', 'ba 00000001 01 02', 'bb 0000000000000001 01 02',
    // 7: simple values and floats
    'f4', 'f5', 'f6', 'f7', 'f8 20', 'f8 ff', 'f9 3c00', 'fa 3f800000', 'fb 3ff0000000000000'
  ]
  for (const h of ok) assert.doesNotThrow(() => scanCbor(hex(h), LIM), h)
  // 6: tags with 0/1/2/4/8 byte tag numbers, well-formed when allowed (refused by default: cbor-tags.test.ts)
  for (const h of ['c1 1a 5f000000', 'd7 40', 'd8 20 60', 'd9 0103 a0', 'da 00010000 00', 'db 0000000100000000 00']) {
    assert.doesNotThrow(() => scanCbor(hex(h), TAGS), h)
  }
})

test('scanCbor: a truncated header or body at every width is a DecodeError', () => {
  for (const h of ['18', '19 01', '1a 000100', '1b 00000001000000', '38', '3b ff', 'f9 3c', 'fa 3f80', 'fb 3ff00000', 'd8', 'd9 01']) {
    scanFails(hex(h), /truncated/)
  }
  for (const h of ['43 0102', '63 6162', '82 01', 'a1 01', 'a2 01 02 03']) scanFails(hex(h), /truncated|declares/)
  for (const h of ['c1', 'd8 20']) scanFails(hex(h), /truncated|declares/, TAGS)
  scanFails(new Uint8Array(0), /truncated/)
})

test('scanCbor: reserved additional info 28-30 is invalid for every major type', () => {
  for (let major = 0; major < 8; major++) {
    for (const ai of [28, 29, 30]) {
      const ib = (major << 5) | ai
      scanFails(Uint8Array.of(ib, 0, 0, 0, 0, 0, 0, 0, 0), /invalid CBOR initial byte/)
      scanFails(Uint8Array.of(0x81, ib), /invalid CBOR initial byte/) // also inside a container
    }
  }
})

test('scanCbor: indefinite length only for bytes, text, arrays and maps', () => {
  for (const ib of [0x1f, 0x3f, 0xdf]) scanFails(Uint8Array.of(ib, 0x00, 0xff), /invalid CBOR initial byte/)
  for (const h of ['5f ff', '5f 41 01 42 0203 ff', '7f 61 61 ff', '9f ff', '9f 01 02 03 ff', 'bf ff', 'bf 61 61 01 ff', '9f 9f ff bf ff ff']) {
    assert.doesNotThrow(() => scanCbor(hex(h), LIM), h)
  }
  assert.deepEqual(decodeUntrusted(hex('9f 01 9f 02 ff ff'), LIM), [1, [2]])
  assert.deepEqual(decodeUntrusted(hex('bf 61 61 01 ff'), LIM), { a: 1 })
})

test('scanCbor: an indefinite item without its break is truncated', () => {
  for (const h of ['9f', '9f 01', 'bf 61 61 01', '5f 41 01', '9f 9f ff']) scanFails(hex(h), /truncated/)
})

test('scanCbor: a break outside an indefinite item is rejected', () => {
  scanFails(hex('ff'), /unexpected CBOR break/)
  scanFails(hex('81 ff'), /unexpected CBOR break/)
  scanFails(hex('a1 61 61 ff'), /unexpected CBOR break/)
  scanFails(hex('c1 ff'), /unexpected CBOR break/, TAGS)
  scanFails(hex('9f ff ff'), /unexpected CBOR break|trailing/)
})

test('scanCbor: trailing bytes after the item are rejected', () => {
  scanFails(hex('01 02'), /1 trailing bytes/)
  scanFails(hex('a0 00 00 00'), /3 trailing bytes/)
  scanFails(hex('9f ff 00'), /trailing/)
})

test('scanCbor: huge declared lengths fail fast, before anything is allocated', () => {
  const huge = [
    '9b ffffffffffffffff', '9b 0000000100000000', '9a ffffffff', 'bb ffffffffffffffff', 'ba ffffffff', 'bb 8000000000000000',
    '5b ffffffffffffffff', '5a ffffffff', '7b ffffffffffffffff', '7a ffffffff', '59 ffff', '99 ffff',
    '81 9b ffffffffffffffff', 'a1 00 5a ffffffff', 'bf 00 7b 0000000100000000 ff'
  ]
  const t0 = performance.now()
  for (const h of huge) {
    scanFails(hex(h), /declares|truncated/)
    assert.throws(() => decodeUntrusted(hex(h), LIM), DecodeError)
  }
  assert.ok(performance.now() - t0 < 200, `took ${performance.now() - t0} ms`)
})

test('scanCbor: a map declaring n pairs needs 2n bytes, not n', () => {
  scanFails(hex('a2 01 02 03'), /map declares 2 pairs/)
  assert.doesNotThrow(() => scanCbor(hex('a2 01 02 03 04'), LIM))
})

test('scanCbor: nesting up to maxDepth passes, one more level fails', () => {
  const nested = (n: number, open: number): Buffer => Buffer.concat([Buffer.alloc(n, open), Buffer.from([0x00])])
  assert.doesNotThrow(() => scanCbor(nested(4, 0x81), { maxDepth: 4 }))
  scanFails(nested(5, 0x81), /nesting deeper than 4/, { maxDepth: 4 })
  // maps and tags count as levels too
  assert.doesNotThrow(() => scanCbor(hex('a1 00 a1 00 00'), { maxDepth: 2 }))
  scanFails(hex('a1 00 a1 00 a1 00 00'), /nesting/, { maxDepth: 2 })
  scanFails(Buffer.concat([Buffer.alloc(3, 0xc1), hex('00')]), /nesting/, { maxDepth: 2, allowTags: [1] })
  scanFails(Buffer.concat([Buffer.alloc(3, 0x9f), hex('ff ff ff')]), /nesting/, { maxDepth: 2 })
  // siblings do not add up: [[0], [0], [0]] is depth 2
  assert.doesNotThrow(() => scanCbor(hex('83 81 00 81 00 81 00'), { maxDepth: 2 }))
})

test('scanCbor: 10,000 nested arrays, maps or tags fail fast without a stack overflow', () => {
  for (const open of [0x81, 0x9f, 0xc6]) {
    const deep = Buffer.concat([Buffer.alloc(10_000, open), hex('00'), Buffer.alloc(open === 0x9f ? 10_000 : 0, 0xff)])
    scanFails(deep, /nesting deeper than 8/, { maxDepth: 8, allowTags: [6] })
    scanFails(deep, open === 0xc6 ? /tag 6 at byte 0/ : /nesting deeper than 8/, { maxDepth: 8 })
    assert.throws(() => decodeUntrusted(deep, { maxDepth: 8 }), DecodeError)
  }
  const deepMap = Buffer.concat([Buffer.from('a16161'.repeat(10_000), 'hex'), hex('00')])
  scanFails(deepMap, /nesting/, { maxDepth: 8 })
})

test('scanCbor: maxItems counts every data item; breaks are not items', () => {
  assert.doesNotThrow(() => scanCbor(hex('83 01 02 03'), { maxDepth: 2, maxItems: 4 }))
  scanFails(hex('83 01 02 03'), /more than 3 items/, { maxDepth: 2, maxItems: 3 })
  assert.doesNotThrow(() => scanCbor(hex('9f 01 02 ff'), { maxDepth: 2, maxItems: 3 }))
  assert.doesNotThrow(() => scanCbor(hex('a1 61 61 01'), { maxDepth: 2, maxItems: 3 }))
  scanFails(hex('a1 61 61 01'), /more than 2 items/, { maxDepth: 2, maxItems: 2 })
})

test('scanCbor: a two-byte simple value below 32 is not well-formed (RFC 8949 3.3)', () => {
  scanFails(hex('f8 14'), /simple|invalid/)
  scanFails(hex('f8 1f'), /simple|invalid/)
})

test('scanCbor: indefinite-length string chunks must be definite strings of the same type', () => {
  scanFails(hex('5f 01 ff'), /chunk|indefinite|invalid/)
  scanFails(hex('7f 41 00 ff'), /chunk|indefinite|invalid/)
  scanFails(hex('5f 5f ff ff'), /chunk|indefinite|invalid/)
})

test('decodeUntrusted returns values; uint64 becomes a number, not a BigInt', () => {
  assert.equal(decodeUntrusted(hex('1b 0000018c8e1f0000'), LIM), 0x18c8e1f0000)
  assert.equal(typeof decodeUntrusted(hex('1b 0000000000000005'), LIM), 'number')
  assert.equal(decodeUntrusted(hex('3b 0000000100000000'), LIM), -0x100000001)
  assert.deepEqual(decodeUntrusted(hex('a2 61 61 01 61 62 82 f5 f6'), LIM), { a: 1, b: [true, null] })
})

test('decodeUntrusted wraps every decoder failure in a DecodeError with the cause', () => {
  // well-formed for scanCbor, refused by the decoder: indefinite text, reserved simple values
  for (const h of ['7f 61 61 ff', 'e0', 'f0']) {
    assert.throws(() => decodeUntrusted(hex(h), LIM), (err: unknown) => err instanceof DecodeError && /malformed CBOR/.test(err.message) && err.cause instanceof Error, h)
  }
})

test('a failed or hostile decode leaves no state behind for the next one', () => {
  const safe = (buf: Uint8Array): unknown => { try { return decodeUntrusted(buf, LIM) } catch (err) { return err instanceof DecodeError ? 'DecodeError' : err } }
  // probes whose meaning would change if a record definition, shared reference or map mode leaked
  const probes = [encodeCbor({ seq: 1, values: { a: 1.5 } }), hex('d9 e000 81 05'), hex('d8 1d 00'), hex('a1 61 61 01')]
  const baseline = probes.map(safe)
  for (const bad of ['d9 0103 81 00', 'd9 0103 d9 0103 00', 'd8 1c 81 d8 1d 05', 'd8 69 83 19 e000 81 61 61 01', 'd8 69 83 19 e000 81 61 61', '7f 61 61 ff', 'd9 dffe 83 19 e000 81 61 62 00']) {
    safe(hex(bad))
    assert.deepEqual(probes.map(safe), baseline, `after 0x${bad}`)
  }
})

test('wireUint: integers above 2^32 go out as CBOR uint64 (0x1b), never float64 (0xfb)', () => {
  assert.equal(wireUint(0), 0)
  assert.equal(wireUint(0xffffffff), 0xffffffff)
  assert.equal(typeof wireUint(0x100000000), 'bigint')
  assert.deepEqual(encodeCbor(wireUint(0xffffffff)), hex('1a ffffffff'))
  assert.deepEqual(encodeCbor(wireUint(0x100000000)), hex('1b 0000000100000000'))
  assert.deepEqual(encodeCbor(wireUint(1_703_191_445_504)), hex('1b 0000018c8e1f0000'))
  assert.deepEqual(encodeCbor(wireUint(Number.MAX_SAFE_INTEGER)), hex('1b 001fffffffffffff'))
  assert.equal(decodeUntrusted(encodeCbor(wireUint(Number.MAX_SAFE_INTEGER)), LIM), Number.MAX_SAFE_INTEGER)
  for (const n of [0, 23, 24, 255, 256, 65535, 65536, 0xffffffff, 2 ** 32, 2 ** 40 + 7, 2 ** 53 - 1]) {
    const buf = encodeCbor(wireUint(n))
    assert.equal(buf[0]! >> 5, 0, `${n} must be major type 0, got 0x${buf.toString('hex')}`)
  }
})

test('cborHead writes the minimal head for each width', () => {
  const cases: [number, number, string][] = [
    [4, 0, '80'], [4, 23, '97'], [4, 24, '98 18'], [4, 255, '98 ff'], [4, 256, '99 0100'], [4, 65535, '99 ffff'],
    [4, 65536, '9a 00010000'], [4, 0xffffffff, '9a ffffffff'],
    [5, 6, 'a6'], [5, 7, 'a7'], [5, 24, 'b8 18'], [5, 300, 'b9 012c'], [0, 5, '05'], [3, 30, '78 1e'], [2, 70000, '5a 00011170']
  ]
  for (const [major, n, h] of cases) assert.deepEqual(cborHead(major, n), hex(h), `cborHead(${major}, ${n})`)
  // a head plus n items is well-formed CBOR
  assert.deepEqual(decodeUntrusted(Buffer.concat([cborHead(4, 300), Buffer.alloc(300, 0x01)]), LIM), new Array(300).fill(1))
})

test('encodeCbor writes no tags: no cbor-x records, structures or typed-array tags', () => {
  const rows = Array.from({ length: 50 }, (_, i) => ({ device: `d${i}`, seq: i, values: { t: i + 0.5, ok: true, s: 'x' } }))
  const samples: unknown[] = [
    rows, // repeated shapes are what cbor-x turns into records (tag 105 / 0xd9 0xdf..) when allowed
    { nested: rows.slice(0, 5), again: rows.slice(5, 10) },
    Buffer.from([1, 2, 3]), new Uint8Array([1, 2, 3]),
    { bytes: new Uint8Array(8), big: wireUint(2 ** 40) },
    Object.assign(Object.create(null) as object, { a: 1, b: 'two' })
  ]
  for (const s of samples) {
    const buf = encodeCbor(s)
    walk(buf, (major, ai, arg, at) => {
      assert.notEqual(major, 6, `tag ${arg} at byte ${at} in 0x${buf.toString('hex').slice(0, 60)}`)
    })
    assert.equal(buf.includes(hex('d869')), false)
  }
  assert.deepEqual(encodeCbor(new Uint8Array([1, 2, 3])), hex('43 010203'))
  assert.deepEqual(encodeCbor(Buffer.from([1, 2, 3])), hex('43 010203'))
})

test('encodeCbor writes minimal map headers', () => {
  const obj = (n: number): Record<string, number> => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]))
  assert.deepEqual(encodeCbor({}), hex('a0'))
  assert.equal(encodeCbor(obj(3))[0], 0xa3)
  assert.equal(encodeCbor(obj(23))[0], 0xb7)
  assert.deepEqual(encodeCbor(obj(24)).subarray(0, 2), hex('b8 18'))
  assert.deepEqual(encodeCbor(obj(300)).subarray(0, 3), hex('b9 012c'))
  // every head in a nested document is minimal
  const buf = encodeCbor({ a: obj(2), b: [obj(30), 'x'.repeat(30)], c: 1000, d: -1000 })
  walk(buf, (major, ai, arg) => {
    if (major === 7) return
    const minimal = arg < 24n ? ai === Number(arg) : arg < 0x100n ? ai === 24 : arg < 0x10000n ? ai === 25 : arg < 0x100000000n ? ai === 26 : ai === 27
    assert.ok(minimal || ai === 31, `major ${major} argument ${arg} written with ai ${ai}`)
  })
})

test('decodeTrusted reads what encodeCbor wrote', () => {
  const v = { p: 3, s: wireUint(2 ** 40), values: { t: 21.5, on: false, name: 'ünï' } }
  assert.deepEqual(decodeTrusted(encodeCbor(v)), { p: 3, s: 2 ** 40, values: { t: 21.5, on: false, name: 'ünï' } })
})

test('invalidUtf8At agrees with Node\'s UTF-8 check on 200,000 random and near-UTF-8 byte strings, and points at the first bad byte', () => {
  const r = mulberry32(20261207)
  const pieces = [[0x61], [0xc3, 0xa9], [0xe2, 0x82, 0xac], [0xf0, 0x9f, 0x98, 0x80], [0xf4, 0x8f, 0xbf, 0xbf], [0xed, 0x9f, 0xbf], [0xee, 0x80, 0x80]]
  for (let i = 0; i < 200_000; i++) {
    const b: number[] = []
    const n = Math.floor(r() * 12)
    for (let k = 0; k < n; k++) {
      if (r() < 0.7) b.push(...pieces[Math.floor(r() * pieces.length)]!)
      else b.push(Math.floor(r() * 256))
    }
    if (b.length > 0 && r() < 0.2) b.pop() // a cut sequence
    const buf = Buffer.from(b)
    const at = invalidUtf8At(buf, 0, buf.length)
    assert.equal(at < 0, isUtf8(buf), buf.toString('hex'))
    if (at >= 0) {
      assert.ok(isUtf8(buf.subarray(0, at)), `the bytes before ${at} are valid: ${buf.toString('hex')}`)
    }
  }
})

test('textKeys and utf8: refusals name the path of map keys; keys are tracked per map, through arrays and indefinite lengths', () => {
  const strict: ScanLimits = { maxDepth: 16, textKeys: true, utf8: true, root: 'body' }
  const refused = (b: Buffer, field: string, re: RegExp): void => {
    assert.throws(() => scanCbor(b, strict), (err: unknown) => err instanceof ValidationError && err.field === field && re.test(err.message), `${b.toString('hex')}`)
  }
  const a = (k: string): Buffer => encodeCbor(k)
  // {x: [{1: 2}]}: the key 1 sits in a map inside an array under x
  refused(Buffer.concat([hex('a1'), a('x'), hex('81 a1 01 02')]), 'x', /map key at byte 5 is the integer 1, not text/)
  refused(hex('a1 01 02'), 'body', /map key at byte 1/)
  // {x: {y: "\xff"}}
  refused(Buffer.concat([hex('a1'), a('x'), hex('a1'), a('y'), hex('61 ff')]), 'x.y', /text at byte 6 is not valid UTF-8/)
  // an indefinite map: key, value, key(1)
  refused(Buffer.concat([hex('bf'), a('k'), hex('01 01 02 ff')]), 'body', /map key at byte 4 is the integer 1/)
  // a chunk of an indefinite text value: each chunk must be valid on its own
  refused(Buffer.concat([hex('a1'), a('s'), hex('7f 61 61 61 ff ff')]), 's', /text at byte 6 is not valid UTF-8/)
  // duplicates: in one map refused, in sibling and nested maps fine
  refused(Buffer.concat([hex('a2'), a('k'), hex('01'), a('k'), hex('02')]), 'body', /map key "k" at byte 4 appears twice/)
  scanCbor(Buffer.concat([hex('a2'), a('k'), hex('a1'), a('k'), hex('01'), a('j'), hex('a1'), a('k'), hex('02')]), strict)
  scanCbor(Buffer.concat([hex('82 a1'), a('k'), hex('01 a1'), a('k'), hex('02')]), strict)
  // a map that closes takes its keys with it: the outer map's next key is compared with its own only
  refused(Buffer.concat([hex('a3'), a('k'), hex('a1'), a('j'), hex('01'), a('j'), hex('02'), a('k'), hex('03')]), 'body', /"k" at byte 10 appears twice/)
  // byte strings are not text: their bytes are not checked
  scanCbor(Buffer.concat([hex('a1'), a('b'), hex('41 ff')]), strict)
  // without the options the same bytes pass the scan, as before
  for (const h of ['a1 01 02', 'a1 61 79 61 ff', 'a2 61 6b 01 61 6b 02']) scanCbor(hex(h), LIM)
})
