/**
 * A structure-aware CBOR generator for fast-check: well-formed and nearly
 * well-formed items with every major type at every head width, every class of tag number
 * (0-23, 1-, 2-, 4- and 8-byte), the tags cbor-x gives meaning to (bignums with up to
 * 60 KiB of content, dates, records, shared references, packed values, typed arrays...),
 * indefinite-length arrays, maps and strings, and nesting thousands of levels deep. Items
 * are placed where each decoder looks (a reading's value, an item's values, an envelope
 * field) so they get past the first checks.
 */
import fc from 'fast-check'

function head (major: number, n: number | bigint, width?: 0 | 1 | 2 | 4 | 8): Buffer {
  const v = BigInt(n)
  const w = width ?? (v < 24n ? 0 : v < 0x100n ? 1 : v < 0x10000n ? 2 : v < 0x100000000n ? 4 : 8)
  const m = major << 5
  if (w === 0) return Buffer.from([m | Number(v)])
  const b = Buffer.alloc(1 + w)
  b[0] = m | (w === 1 ? 24 : w === 2 ? 25 : w === 4 ? 26 : 27)
  for (let i = 0; i < w; i++) b[w - i] = Number((v >> BigInt(8 * i)) & 0xffn)
  return b
}

/** A tag number from each class of head width, and the ones cbor-x handles itself. */
export const tagNumber: fc.Arbitrary<bigint> = fc.oneof(
  fc.bigInt({ min: 0n, max: 23n }),
  fc.bigInt({ min: 24n, max: 255n }),
  fc.bigInt({ min: 256n, max: 65535n }),
  fc.bigInt({ min: 65536n, max: 0xffffffffn }),
  fc.bigInt({ min: 0x100000000n, max: 0xffffffffffffffffn }),
  fc.constantFrom(0n, 1n, 2n, 3n, 4n, 5n, 14n, 15n, 21n, 25n, 27n, 28n, 29n, 51n, 64n, 72n, 85n, 105n, 225n, 256n, 258n, 259n, 0xdff9n, 0xdffen, 0xdfffn, 0xe000n, 28704n, 55799n)
)

const uint = fc.oneof(
  fc.integer({ min: 0, max: 23 }).map((n) => head(0, n)),
  fc.tuple(fc.constantFrom(1, 2, 4, 8) as fc.Arbitrary<1 | 2 | 4 | 8>, fc.bigInt({ min: 0n, max: 0xffffffffffffffffn }), fc.constantFrom(0, 1))
    .map(([w, n, major]) => head(major, n & ((1n << BigInt(8 * w)) - 1n), w))
)
const float = fc.oneof(
  fc.double().map((d) => { const b = Buffer.alloc(9); b[0] = 0xfb; b.writeDoubleBE(d, 1); return b }),
  fc.uint8Array({ minLength: 2, maxLength: 2 }).map((b) => Buffer.concat([Buffer.from([0xf9]), b])),
  fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => Buffer.concat([Buffer.from([0xfa]), b])),
  fc.constantFrom(0xf4, 0xf5, 0xf6, 0xf7, 0xe0, 0xf3).map((x) => Buffer.from([x])),
  fc.integer({ min: 32, max: 255 }).map((x) => Buffer.from([0xf8, x]))
)
const text = fc.string({ maxLength: 20 }).map((s) => { const b = Buffer.from(s); return Buffer.concat([head(3, b.length), b]) })
const bytes = fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.concat([head(2, b.length), b]))
const key = fc.constantFrom('a', 'values', 'seq', 'ts', 'boot', 'v', 'items', '__proto__', 'toString', 'constructor').map((s) => Buffer.concat([head(3, s.length), Buffer.from(s)]))
/** Indefinite strings: chunks of the right type, sometimes a wrong one. */
const indefString = fc.tuple(fc.constantFrom(2, 3), fc.array(fc.oneof(bytes, text), { maxLength: 4 }))
  .map(([major, chunks]) => Buffer.concat([Buffer.from([(major << 5) | 31]), ...chunks, Buffer.from([0xff])]))
/** A bignum with a long (costly for cbor-x) content: the payload. */
export const bigBignum: fc.Arbitrary<Buffer> = fc.tuple(fc.constantFrom(2, 3), fc.constantFrom(512, 4096, 16 * 1024, 60 * 1024), fc.constantFrom(0, 1, 2, 4, 8))
  .map(([tag, n, w]) => Buffer.concat([head(6, tag, w === 0 ? 0 : w as 1 | 2 | 4 | 8), head(2, n), Buffer.alloc(n, 0xff)]))

const leaf: fc.Arbitrary<Buffer> = fc.oneof(uint, float, text, bytes, key, indefString)

/** Any item, nested through arrays, maps (definite or not) and tags. */
export const cborItem: fc.Arbitrary<Buffer> = fc.letrec<{ item: Buffer }>((tie) => ({
  item: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    leaf,
    fc.tuple(fc.boolean(), fc.array(tie('item'), { maxLength: 4 })).map(([indef, xs]) =>
      Buffer.concat(indef ? [Buffer.from([0x9f]), ...xs, Buffer.from([0xff])] : [head(4, xs.length), ...xs])),
    fc.tuple(fc.boolean(), fc.array(fc.tuple(fc.oneof(key, tie('item')), tie('item')), { maxLength: 3 })).map(([indef, kv]) =>
      Buffer.concat(indef ? [Buffer.from([0xbf]), ...kv.flat(), Buffer.from([0xff])] : [head(5, kv.length), ...kv.flat()])),
    fc.tuple(tagNumber, fc.constantFrom(undefined, 1, 2, 4, 8) as fc.Arbitrary<undefined | 1 | 2 | 4 | 8>, tie('item')).map(([t, w, x]) => {
      const width = w === undefined || (w < 8 && t >= 1n << BigInt(8 * w)) ? undefined : w
      return Buffer.concat([head(6, t, width), x])
    }),
    bigBignum
  )
})).item

/** Thousands of levels: arrays, indefinite arrays, maps, tags, or a mix, around an item. */
export const deepItem: fc.Arbitrary<Buffer> = fc.tuple(fc.integer({ min: 1, max: 5000 }), fc.constantFrom('array', 'indef', 'map', 'tag', 'mix'), fc.integer())
  .map(([n, kind, seed]) => {
    const open: Buffer[] = []
    const close: Buffer[] = []
    for (let i = 0; i < n; i++) {
      const k = kind === 'mix' ? (['array', 'indef', 'map', 'tag'] as const)[Math.abs(seed + i * 7) % 4]! : kind
      if (k === 'array') open.push(Buffer.from([0x81]))
      else if (k === 'indef') { open.push(Buffer.from([0x9f])); close.push(Buffer.from([0xff])) } else if (k === 'map') open.push(Buffer.from([0xa1, 0x61, 0x61]))
      else open.push(Buffer.from([0xc6]))
    }
    return Buffer.concat([...open, Buffer.from([0x00]), ...close.reverse()])
  })

const enc = (s: string): Buffer => Buffer.concat([head(3, Buffer.byteLength(s)), Buffer.from(s)])
const map = (pairs: [string, Buffer][]): Buffer => Buffer.concat([head(5, pairs.length), ...pairs.flatMap(([k, v]) => [enc(k), v])])

/** Where an item goes: whole input, a reading's value or field, an item's values, an envelope field. */
export type Target = 'reading' | 'batch' | 'batchV2' | 'response' | 'responseV2' | 'receipt' | 'view'
export function placed (target: Target, item: Buffer, where: number): Buffer {
  const w = where % 4
  if (w === 0) return item
  switch (target) {
    case 'reading': case 'view':
      return w === 1 ? map([['values', map([['a', item]])]]) : w === 2 ? map([['seq', item], ['values', map([['a', head(0, 1)]])]]) : map([['values', item]])
    case 'batch': {
      const env = (items: Buffer): Buffer => map([['v', head(0, 1)], ['gateway', enc('g')], ['epoch', enc('e')], ['batch', enc('b')], ['items', items], ['floors', head(4, 0)]])
      const it = (values: Buffer, seq = head(7, 22)): Buffer => Buffer.concat([head(4, 8), head(0, 0), head(0, 1), enc('d'), seq, head(7, 22), head(7, 22), head(0, 5), values])
      return w === 1 ? env(Buffer.concat([head(4, 1), it(map([['a', item]]))])) : w === 2 ? env(Buffer.concat([head(4, 1), it(map([['a', head(0, 1)]]), item)])) : env(item)
    }
    case 'batchV2':
      return map([['v', head(0, 2)], ['gateway', enc('g')], ['epoch', enc('e')], ['batch', enc('b')], ['n', head(0, 1)], [w === 1 ? 'cols' : w === 2 ? 'p' : 'names', item]])
    case 'response': case 'responseV2':
      return map([['v', head(0, target === 'response' ? 1 : 2)], ['batch', enc('b')], ['results', w === 1 ? item : Buffer.concat([head(4, 1), head(4, 3), head(0, 0), item, head(0, 0)])]])
    case 'receipt':
      return map([['boot', w === 1 ? item : head(0, 1)], ['upTo', w === 2 ? item : head(0, 1)], ['rejected', w === 3 ? item : head(4, 0)]])
  }
}
