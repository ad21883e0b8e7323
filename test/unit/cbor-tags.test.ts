/**
 * No CBOR tag reaches cbor-x from untrusted input. A 16 KiB bignum
 * (tag 2) cost ~25 ms of cbor-x's quadratic BigInt build before the reading was rejected,
 * 64 KiB ~420 ms; the scanner now refuses the tag head, naming its number and offset.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeBatch, decodeResponse, decodeReceipt, encodeBatch } from '../../protocol/batch.ts'
import { decodeBatchV2 } from '../../protocol/batch-v2-decode.ts'
import { decodeResponseV2 } from '../../protocol/batch-v2.ts'
import { decodeUntrusted, encodeCbor, MAX_BIGNUM_BYTES, scanCbor, type ScanLimits } from '../../protocol/cbor.ts'
import { DecodeError } from '../../protocol/errors.ts'
import { decodeReading } from '../../protocol/reading.ts'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const LIM: ScanLimits = { maxDepth: 16 }

function refused (buf: Uint8Array, tag: number | string, at: number, limits: ScanLimits = LIM): void {
  assert.throws(() => scanCbor(buf, limits), (err: unknown) => {
    assert.ok(err instanceof DecodeError, `expected DecodeError, got ${String(err)}`)
    assert.equal(err.message, `CBOR tag ${tag} at byte ${at} is not accepted (untrusted CBOR carries no tags)`)
    return true
  }, `0x${Buffer.from(buf).toString('hex').slice(0, 60)}`)
}

/** The 9-byte-header bignum of the issue: {"values":{"a":tag2(n bytes of 0xff)}}. */
function bignumReading (n: number): Buffer {
  const head = n < 24 ? Buffer.from([0x40 | n]) : n < 256 ? Buffer.from([0x58, n]) : n < 65536 ? Buffer.from([0x59, n >> 8, n & 0xff]) : Buffer.from([0x5a, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff])
  return Buffer.concat([hex('a1 66 76616c756573 a1 61 61 c2'), head, Buffer.alloc(n, 0xff)])
}

test('scanCbor refuses a tag in every head width: 0-23 immediate, 24 (1 byte), 25 (2), 26 (4), 27 (8)', () => {
  for (const t of [0, 1, 2, 3, 4, 5, 6, 21, 23]) refused(Buffer.from([0xc0 | t, 0x00]), t, 0)
  refused(hex('d8 18 00'), 24, 0)
  refused(hex('d8 ff 00'), 255, 0)
  refused(hex('d8 1b 82 65 4572726f72 61 78'), 27, 0) // cbor-x: a generic object (calls RegExp/Error)
  refused(hex('d8 1c 81 d8 1d 00'), 28, 0) // shared references: cycles
  refused(hex('d9 0103 a0'), 259, 0) // Map
  refused(hex('d9 d9f7 00'), 55799, 0) // self-describe
  refused(hex('d9 e000 81 05'), 0xe000, 0) // cbor-x record ids
  refused(hex('d9 dfff 83 19 e000 81 61 61 01'), 0xdfff, 0)
  refused(hex('da 00010000 00'), 0x10000, 0)
  refused(hex('da ffffffff 00'), 0xffffffff, 0)
  refused(hex('db 0000000100000000 00'), 0x100000000, 0)
  refused(hex('db 001fffffffffffff 00'), Number.MAX_SAFE_INTEGER, 0)
})

test('scanCbor names the offset of the first tag: nested, in maps, in indefinite arrays and maps', () => {
  refused(hex('c2 c3 41 01'), 2, 0) // nested: the outer one
  refused(hex('82 01 c2 41 01'), 2, 2)
  refused(hex('a1 61 61 d9 0103 a0'), 259, 3) // map value
  refused(hex('a1 c1 00 01'), 1, 1) // map key
  refused(hex('9f 01 02 c1 00 ff'), 1, 3) // indefinite array
  refused(hex('bf 61 61 01 61 62 c2 41 01 ff'), 2, 6) // indefinite map value
  refused(hex('bf c2 41 01 01 ff'), 2, 1) // indefinite map key
  refused(hex('9f 9f 9f c6 00 ff ff ff'), 6, 3)
  refused(bignumReading(16 * 1024), 2, 11) // the payload
})

test('scanCbor: a tag inside an indefinite-length string is not a valid chunk', () => {
  for (const h of ['5f c2 41 01 ff', '7f c0 61 61 ff', '5f 41 01 d8 18 41 01 ff']) {
    assert.throws(() => scanCbor(hex(h), LIM), /chunk of an indefinite-length string/)
  }
})

test('scanCbor: allowTags lets named tags through; an allowed bignum is capped at maxBignumBytes', () => {
  assert.equal(MAX_BIGNUM_BYTES, 8)
  assert.doesNotThrow(() => scanCbor(hex('c1 1a 5f000000'), { maxDepth: 2, allowTags: [1] }))
  refused(hex('c1 1a 5f000000'), 1, 0, { maxDepth: 2, allowTags: [0, 2] })
  const big: ScanLimits = { maxDepth: 2, allowTags: [2, 3] }
  assert.doesNotThrow(() => scanCbor(hex('c2 48 ffffffffffffffff'), big))
  assert.doesNotThrow(() => scanCbor(hex('c3 40'), big))
  for (const h of ['c2 49 ffffffffffffffffff', 'c3 58 09 ffffffffffffffffff', 'c2 59 0001 00', 'c2 5f 41 01 ff', 'c2 01', 'c2 61 61']) {
    assert.throws(() => scanCbor(hex(h), big), /CBOR bignum \(tag at byte 0\) must be a byte string of at most 8 bytes/, h)
  }
  assert.doesNotThrow(() => scanCbor(hex('c2 50 ffffffffffffffffffffffffffffffff'), { ...big, maxBignumBytes: 16 }))
  assert.throws(() => scanCbor(hex('c2'), big), DecodeError)
})

test('untagged input decodes as before: uint64 above 2^53 is a number (validation refuses it by field)', () => {
  assert.equal(decodeUntrusted(hex('1b 0020000000000001'), LIM), 2 ** 53)
  assert.equal(typeof decodeUntrusted(hex('1b ffffffffffffffff'), LIM), 'number')
  assert.throws(() => decodeReading(hex('a2 63 736571 1b 0020000000000000 66 76616c756573 a1 61 61 01'), 1024), /seq: must be an unsigned integer below 2\^53/)
  assert.deepEqual(decodeReading(encodeCbor({ seq: 1, ts: BigInt(1_700_000_000_000), values: { a: 1 } }), 1024), { seq: 1, boot: null, ts: 1_700_000_000_000, values: { a: 1 } })
})

test('every untrusted decoder refuses a 64 KiB bignum fast, with the tag named', () => {
  const n = 64 * 1024
  const bigAt = (prefix: Buffer): Buffer => Buffer.concat([prefix, hex('c2 5a'), Buffer.from([0, 1, 0, 0]), Buffer.alloc(n, 0xff)])
  const ok = encodeBatch({ gateway: 'g', epoch: 'e', batch: 'b', floors: [], items: [[0, 1, 'd', 1, 1, 1, 1, { a: 1 }]] })
  assert.ok(decodeBatch(ok, { maxItems: 10 }))
  const cases: [string, () => unknown][] = [
    ['decodeReading', () => decodeReading(bignumReading(n), 128 * 1024)],
    ['decodeBatch', () => decodeBatch(bigAt(hex('a1 61 76')), { maxItems: 10 })],
    ['decodeBatchV2', () => decodeBatchV2(bigAt(hex('a1 61 76')), { maxItems: 10 })],
    ['decodeResponse', () => decodeResponse(bigAt(hex('a2 61 76 01 67 726573756c7473 81 83 00 01')))],
    ['decodeResponseV2', () => decodeResponseV2(bigAt(hex('a1 61 76')))],
    ['decodeReceipt', () => decodeReceipt(bigAt(hex('a1 64 626f6f74')))]
  ]
  for (const [name, f] of cases) {
    const t0 = performance.now()
    assert.throws(f, (e: unknown) => e instanceof DecodeError && /^CBOR tag 2 at byte \d+ is not accepted/.test(e.message), name)
    const ms = performance.now() - t0
    // cbor-x took ~420 ms for this on a quiet machine; the scan is well under a millisecond
    assert.ok(ms < 100, `${name} took ${ms.toFixed(1)} ms`)
  }
})
