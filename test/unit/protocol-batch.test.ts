import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  decodeBatch, decodeReceipt, decodeResponse, encodeBatch, encodeBatchRaw, encodeItem, encodeReceipt, encodeResponse,
  itemKey, validateItem, type BatchItem, type BatchRequest
} from '../../protocol/batch.ts'
import { decodeTrusted, encodeCbor } from '../../protocol/cbor.ts'
import { AckCode } from '../../protocol/codes.ts'
import { DecodeError, EdgeError, ValidationError } from '../../protocol/errors.ts'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
/** Byte equality (deepEqual would also compare the DataView cbor-x caches on a decoded Buffer). */
const sameBytes = (a: Uint8Array, b: Uint8Array, msg?: string): void => assert.equal(Buffer.from(a).toString('hex'), Buffer.from(b).toString('hex'), msg)
const enc = (v: unknown): Buffer => encodeCbor(v)
/** A definite CBOR map from already-encoded values, so a test controls every byte. */
const cmap = (pairs: [string, Buffer][]): Buffer =>
  Buffer.concat([Buffer.from([0xa0 | pairs.length]), ...pairs.flatMap(([k, v]) => [enc(k), v])])

// ---- an independent CBOR decoder (no cbor-x, no scanCbor) that keeps each item's major type
type Node =
  | { t: 'uint' | 'nint', v: bigint } | { t: 'bytes', v: Uint8Array } | { t: 'text', v: string }
  | { t: 'array', v: Node[] } | { t: 'map', v: [Node, Node][] } | { t: 'tag', tag: bigint, v: Node }
  | { t: 'simple', v: number } | { t: 'float', v: number }

function parseNode (buf: Uint8Array, pos: number): [Node, number] {
  const ib = buf[pos++]!
  const major = ib >> 5
  const ai = ib & 31
  if (major === 7) {
    if (ai < 24) return [{ t: 'simple', v: ai }, pos]
    const dv = new DataView(buf.buffer, buf.byteOffset)
    if (ai === 25) { const h = dv.getUint16(pos); return [{ t: 'float', v: halfToNumber(h) }, pos + 2] }
    if (ai === 26) return [{ t: 'float', v: dv.getFloat32(pos) }, pos + 4]
    if (ai === 27) return [{ t: 'float', v: dv.getFloat64(pos) }, pos + 8]
    throw new Error(`unsupported simple 0x${ib.toString(16)}`)
  }
  if (ai === 31) throw new Error('indefinite lengths are not expected from our encoder')
  let arg = BigInt(ai)
  if (ai >= 24) {
    const n = 1 << (ai - 24)
    arg = 0n
    for (let i = 0; i < n; i++) arg = (arg << 8n) | BigInt(buf[pos++]!)
  }
  switch (major) {
    case 0: return [{ t: 'uint', v: arg }, pos]
    case 1: return [{ t: 'nint', v: -1n - arg }, pos]
    case 2: return [{ t: 'bytes', v: buf.subarray(pos, pos + Number(arg)) }, pos + Number(arg)]
    case 3: return [{ t: 'text', v: Buffer.from(buf.subarray(pos, pos + Number(arg))).toString('utf8') }, pos + Number(arg)]
    case 4: {
      const v: Node[] = []
      for (let i = 0n; i < arg; i++) { const [n, p] = parseNode(buf, pos); v.push(n); pos = p }
      return [{ t: 'array', v }, pos]
    }
    case 5: {
      const v: [Node, Node][] = []
      for (let i = 0n; i < arg; i++) { const [k, p1] = parseNode(buf, pos); const [x, p2] = parseNode(buf, p1); v.push([k, x]); pos = p2 }
      return [{ t: 'map', v }, pos]
    }
    default: { const [n, p] = parseNode(buf, pos); return [{ t: 'tag', tag: arg, v: n }, p] }
  }
}
function halfToNumber (h: number): number {
  const e = (h >> 10) & 0x1f
  const m = h & 0x3ff
  const s = h & 0x8000 ? -1 : 1
  return e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15)
}
function parseAll (buf: Uint8Array): Node {
  const [n, end] = parseNode(buf, 0)
  assert.equal(end, buf.length, 'one item, no trailing bytes')
  return n
}
function field (m: Node, key: string): Node {
  assert.equal(m.t, 'map')
  const hit = (m as { v: [Node, Node][] }).v.find(([k]) => k.t === 'text' && k.v === key)
  assert.ok(hit, `key ${key}`)
  return hit[1]
}
function assertUint (n: Node, expected: number, what: string): void {
  assert.equal(n.t, 'uint', `${what} must be CBOR major type 0, got ${n.t}`)
  assert.equal((n as { v: bigint }).v, BigInt(expected), what)
}

// ---- fixtures
const big = 2 ** 40 + 3
const items: BatchItem[] = [
  [0, 1, 'dev-1', 1, 7, 1_703_191_445_504, 1_703_191_445_600, { t: 21.5, on: true, s: 'ok' }],
  [0, 2, 'dev-1', null, null, null, 1_703_191_445_700, { n: -3 }],
  [5, big, 'dev.2_x', Number.MAX_SAFE_INTEGER, 'boot-ü', 0, 0, { a: 0 }],
  [65535, 0xffffffff, 'd', 0x100000000, 0xffffffff, 0x100000000, 0xffffffff, { z: 'é'.repeat(128) }]
]
const env = { gateway: 'gw-1', epoch: 'e-123', batch: 'b-1', floors: [[0, 1], [5, big], [65535, 0]] as [number, number][] }
const request: Omit<BatchRequest, 'v'> = { ...env, items }

const plainItem = (it: BatchItem): unknown[] => [...it.slice(0, 7), { ...it[7] }]

test('encodeBatch -> decodeBatch -> validateItem round trip', () => {
  const dec = decodeBatch(encodeBatch(request), { maxItems: 100 })
  assert.equal(dec.v, 1)
  assert.deepEqual([dec.gateway, dec.epoch, dec.batch], ['gw-1', 'e-123', 'b-1'])
  assert.deepEqual(dec.floors, env.floors)
  assert.equal('evicted' in dec, false)
  assert.equal(dec.items.length, items.length)
  dec.items.forEach((raw, i) => assert.deepEqual(plainItem(validateItem(raw)), plainItem(items[i]!), `item ${i}`))
})

test('encodeBatchRaw over encodeItem bytes is byte-identical to encodeBatch', () => {
  for (const evicted of [undefined, [], [[0, 1, 5], [3, big, big + 10]] as [number, number, number][]]) {
    const req = { ...request, ...(evicted ? { evicted } : {}) }
    sameBytes(encodeBatchRaw(req, items.map(encodeItem)), encodeBatch(req), `evicted ${JSON.stringify(evicted)}`)
  }
  sameBytes(encodeBatchRaw(env, []), encodeBatch({ ...env, items: [] }))
})

test('the body is standard CBOR an independent decoder reads', () => {
  const body = parseAll(encodeBatch(request))
  assert.equal(body.t, 'map')
  assert.deepEqual((body as { v: [Node, Node][] }).v.map(([k]) => (k as { v: string }).v), ['v', 'gateway', 'epoch', 'batch', 'items', 'floors'])
  assertUint(field(body, 'v'), 1, 'v')
  assert.deepEqual(field(body, 'gateway'), { t: 'text', v: 'gw-1' })
  const check = (n: Node): void => {
    assert.notEqual(n.t, 'tag', 'no tags anywhere')
    if (n.t === 'array') n.v.forEach(check)
    if (n.t === 'map') n.v.forEach(([k, v]) => { check(k); check(v) })
  }
  check(body)
})

test('uint fields (p, s, seq, ts, rx, boot, floors) are CBOR major type 0, never floats', () => {
  const body = parseAll(encodeBatch({ ...request, evicted: [[5, big, big + 1]] }))
  const its = field(body, 'items') as { t: 'array', v: Node[] }
  items.forEach((it, i) => {
    const arr = its.v[i] as { t: 'array', v: Node[] }
    assert.equal(arr.t, 'array')
    assert.equal(arr.v.length, 8)
    assertUint(arr.v[0]!, it[0], `items[${i}].p`)
    assertUint(arr.v[1]!, it[1], `items[${i}].s`)
    if (it[3] !== null) assertUint(arr.v[3]!, it[3], `items[${i}].seq`)
    else assert.deepEqual(arr.v[3], { t: 'simple', v: 22 })
    if (typeof it[4] === 'number') assertUint(arr.v[4]!, it[4], `items[${i}].boot`)
    if (it[5] !== null) assertUint(arr.v[5]!, it[5], `items[${i}].ts`)
    assertUint(arr.v[6]!, it[6], `items[${i}].rx`)
  })
  const floors = field(body, 'floors') as { t: 'array', v: { t: 'array', v: Node[] }[] }
  env.floors.forEach(([p, s], i) => { assertUint(floors.v[i]!.v[0]!, p, 'floor p'); assertUint(floors.v[i]!.v[1]!, s, 'floor s') })
  const ev = field(body, 'evicted') as { t: 'array', v: { t: 'array', v: Node[] }[] }
  assertUint(ev.v[0]!.v[1]!, big, 'evicted from')
  assertUint(ev.v[0]!.v[2]!, big + 1, 'evicted to')
  // and the widths are the minimal ones: 2^32 - 1 in 4 bytes, 2^32 in 8
  const it3 = encodeItem(items[3]!)
  assert.ok(it3.includes(hex('1a ffffffff')) && it3.includes(hex('1b 0000000100000000')))
  assert.equal(encodeItem(items[2]!).includes(0xfb), false)
})

test('evicted is in the body only when non-empty', () => {
  const without = encodeBatch({ ...request, evicted: [] })
  assert.equal(without[0], 0xa6)
  assert.equal('evicted' in (decodeTrusted(without) as object), false)
  sameBytes(without, encodeBatch(request))
  const withEv = encodeBatch({ ...request, evicted: [[0, 10, 20]] })
  assert.equal(withEv[0], 0xa7)
  assert.deepEqual(decodeBatch(withEv, { maxItems: 10 }).evicted, [[0, 10, 20]])
})

/** Builds a body from a plain envelope object (values may be broken on purpose). */
const body = (over: Record<string, unknown>, drop: string[] = []): Buffer => {
  const base: Record<string, unknown> = { v: 1, gateway: 'gw', epoch: 'e', batch: 'b', items: [], floors: [] }
  for (const d of drop) delete base[d]
  return enc({ ...base, ...over })
}
function batchRejects (buf: Uint8Array, Kind: typeof DecodeError | typeof ValidationError, fieldName?: string, maxItems = 10): EdgeError {
  let caught: unknown
  try { decodeBatch(buf, { maxItems }) } catch (err) { caught = err }
  assert.ok(caught instanceof Kind, `expected ${Kind.name}, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`)
  if (fieldName !== undefined) assert.equal((caught as ValidationError).field, fieldName, caught.message)
  return caught
}

test('decodeBatch: wrong or missing v', () => {
  for (const v of [2, 0, '1', null, 1.5, [1]]) assert.match(batchRejects(body({ v }), ValidationError, 'v').message, /version/)
  batchRejects(body({}, ['v']), ValidationError, 'v')
})

test('decodeBatch: v of an exotic CBOR type (BigInt, cyclic) is refused before decoding', () => {
  for (const v of ['c2 41 01', 'd8 1c 81 d8 1d 00']) {
    assert.throws(() => decodeBatch(cmap([['v', hex(v)]]), { maxItems: 1 }), (e: unknown) => e instanceof DecodeError && /^CBOR tag (2|28) at byte 3 is not accepted/.test(e.message))
  }
})

test('decodeBatch: gateway, epoch, batch must be non-empty text within their limits', () => {
  for (const [k, max] of [['gateway', 64], ['epoch', 64], ['batch', 128]] as const) {
    batchRejects(body({}, [k]), ValidationError, k)
    for (const bad of ['', 5, null, ['x'], 'x'.repeat(max + 1)]) batchRejects(body({ [k]: bad }), ValidationError, k)
    assert.equal(decodeBatch(body({ [k]: 'x'.repeat(max) }), { maxItems: 1 })[k], 'x'.repeat(max))
  }
})

test('decodeBatch: items must be an array within maxItems', () => {
  batchRejects(body({}, ['items']), ValidationError, 'items')
  for (const bad of [{}, 'x', 3, null]) batchRejects(body({ items: bad }), ValidationError, 'items')
  const e = batchRejects(body({ items: [1, 2, 3] }), ValidationError, 'items', 2)
  assert.match(e.message, /3 items exceeds the limit of 2/)
  assert.equal(decodeBatch(body({ items: [1, 2] }), { maxItems: 2 }).items.length, 2)
})

test('decodeBatch: items are returned unvalidated, so one bad item does not sink the batch', () => {
  const dec = decodeBatch(body({ items: [[0, 1, 'bad id', null, null, null, 1, { a: 1 }], 'junk'] }), { maxItems: 10 })
  assert.equal(dec.items.length, 2)
  assert.throws(() => validateItem(dec.items[0]), (err: unknown) => err instanceof ValidationError && err.field === 'device')
})

test('decodeBatch: a full batch (maxItems items of 64 values) fits the CBOR item budget', () => {
  const values = Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`v${i}`, i]))
  const full: BatchItem[] = Array.from({ length: 100 }, (_, i) => [i % 8, i, `dev-${i}`, i, 'boot', 1, 2, values])
  const floors = Array.from({ length: 8 }, (_, p) => [p, 0] as [number, number])
  const dec = decodeBatch(encodeBatch({ ...env, floors, items: full }), { maxItems: 100 })
  assert.equal(dec.items.length, 100)
})

test('decodeBatch: floors are [p, s] pairs of unsigned integers; missing floors are empty', () => {
  assert.deepEqual(decodeBatch(body({}, ['floors']), { maxItems: 1 }).floors, [])
  batchRejects(body({ floors: 'x' }), ValidationError, 'floors')
  for (const bad of [[0], [0, 1, 2], [-1, 0], [0, 1.5], ['0', 1], 5, [0, 2 ** 53]]) {
    const e = batchRejects(body({ floors: [[1, 1], bad] }), ValidationError, 'floors[1]')
    assert.match(e.message, /2 unsigned integers/)
  }
})

test('decodeBatch: evicted are [p, from, to] with from <= to', () => {
  assert.deepEqual(decodeBatch(body({ evicted: [[1, 5, 5]] }), { maxItems: 1 }).evicted, [[1, 5, 5]])
  assert.match(batchRejects(body({ evicted: [[1, 2, 3], [1, 6, 5]] }), ValidationError, 'evicted[1]').message, /fromSeq above toSeq/)
  batchRejects(body({ evicted: null }), ValidationError, 'evicted')
  batchRejects(body({ evicted: {} }), ValidationError, 'evicted')
  for (const bad of [[1, 2], [1, -2, 3], [1, 2, 'x']]) batchRejects(body({ evicted: [bad] }), ValidationError, 'evicted[0]')
})

test('decodeBatch: a non-map or malformed body is a DecodeError', () => {
  for (const v of [[1], 'x', 1, null, true, Buffer.from('{}')]) assert.match(batchRejects(enc(v), DecodeError).message, /CBOR map/)
  batchRejects(new Uint8Array(0), DecodeError)
  batchRejects(encodeBatch(request).subarray(0, 40), DecodeError)
  batchRejects(Buffer.concat([encodeBatch(request), hex('00')]), DecodeError)
  batchRejects(Buffer.concat([Buffer.alloc(10_000, 0x81), hex('00')]), DecodeError)
  batchRejects(hex('bb ffffffffffffffff'), DecodeError)
  batchRejects(Buffer.from('{"v":1}'), DecodeError)
})

// ---- validateItem
const good: unknown[] = [3, 10, 'dev-1', 5, 'b', 1000, 2000, { t: 1 }]
const withAt = (i: number, v: unknown): unknown[] => { const c = good.slice(); c[i] = v; return c }
function itemRejects (item: unknown, fieldName: string): void {
  assert.throws(() => validateItem(item), (err: unknown) => {
    assert.ok(err instanceof ValidationError, `expected ValidationError, got ${String(err)}`)
    assert.equal(err.field, fieldName, err.message)
    return true
  }, JSON.stringify(item))
}

test('validateItem accepts a valid item and returns it', () => {
  assert.deepEqual(plainItem(validateItem(good)), [3, 10, 'dev-1', 5, 'b', 1000, 2000, { t: 1 }])
  assert.deepEqual(plainItem(validateItem(withAt(4, 9))), [3, 10, 'dev-1', 5, 9, 1000, 2000, { t: 1 }])
  assert.deepEqual(plainItem(validateItem([0, 0, 'd', null, null, null, 0, { a: 'x' }])), [0, 0, 'd', null, null, null, 0, { a: 'x' }])
  // values as a CBOR Map (tag 259) are read like a map
  assert.deepEqual({ ...validateItem(withAt(7, new Map([['a', 1]])))[7] }, { a: 1 })
})

test('validateItem: per-field errors', () => {
  for (const bad of [null, 'x', {}, good.slice(0, 7), [...good, 1]]) itemRejects(bad, 'item')
  for (const p of [-1, 65536, 1.5, '3', null, NaN]) itemRejects(withAt(0, p), 'p')
  for (const s of [-1, 2 ** 53, 0.5, '10', null]) itemRejects(withAt(1, s), 's')
  for (const d of ['', 'a b', 'x'.repeat(65), 7, null, 'dev/1']) itemRejects(withAt(2, d), 'device')
  for (const seq of [-1, 2 ** 53, 1.5, '5', undefined]) itemRejects(withAt(3, seq), 'seq')
  for (const boot of [-1, 1.5, 'x'.repeat(65), 'é'.repeat(33), {}, true, undefined]) itemRejects(withAt(4, boot), 'boot')
  for (const ts of [-1, 1.5, 'now', 2 ** 53, undefined]) itemRejects(withAt(5, ts), 'ts')
  for (const rx of [-1, null, 1.5, '1']) itemRejects(withAt(6, rx), 'rx')
  for (const v of [null, undefined, [], {}, 'x', 5]) itemRejects(withAt(7, v), 'values')
  itemRejects(withAt(7, { t: NaN }), 'values.t')
  itemRejects(withAt(7, { t: [1] }), 'values.t')
  itemRejects(withAt(7, { 'bad name': 1 }), 'values.bad name')
  itemRejects(withAt(7, Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`v${i}`, i]))), 'values')
})

test('validateItem: a Map of values with a hostile key is a ValidationError', () => {
  itemRejects(withAt(7, new Map<unknown, unknown>([[{ toString: 1 }, 1]])), 'values')
  // on the wire, [0, 1, "dev", null, null, null, 5, 259({ {"toString": 1}: 1 })] is refused whole: no CBOR tag is read from untrusted input
  assert.throws(() => decodeBatch(Buffer.concat([cmap([['v', enc(1)], ['gateway', enc('g')], ['epoch', enc('e')], ['batch', enc('b')],
    ['items', Buffer.concat([hex('81 88'), ...[0, 1, 'dev', null, null, null, 5].map(enc), hex('d9 0103 a1 a1'), enc('toString'), hex('01 01')])]])]), { maxItems: 1 }),
  (e: unknown) => e instanceof DecodeError && /tag 259 at byte 48/.test(e.message))
})

test('itemKey: (p, s) when both are unsigned integers, else null', () => {
  assert.deepEqual(itemKey(good), [3, 10])
  assert.deepEqual(itemKey([1, 2]), [1, 2])
  assert.deepEqual(itemKey([0, 0, 'whatever']), [0, 0])
  for (const bad of [null, 'x', {}, [], [1], [-1, 2], [1, 2 ** 53], ['1', 2], [1.5, 2], [1, null]]) assert.equal(itemKey(bad), null, JSON.stringify(bad))
})

// ---- responses
test('encodeResponse -> decodeResponse round trip', () => {
  const results = [[0, 1, AckCode.Stored], [0, 2, AckCode.Duplicate], [5, big, AckCode.Retry], [7, 0xffffffff + 1, AckCode.Rejected, 'values.t: must be finite']] as const
  const buf = encodeResponse({ batch: 'b-9', results: results.map((r) => [...r]) as never })
  assert.deepEqual(decodeResponse(buf), { v: 1, batch: 'b-9', results: results.map((r) => [...r]) })
  // s above 2^32 goes out as uint64
  const parsed = parseAll(buf)
  const res = field(parsed, 'results') as { t: 'array', v: { t: 'array', v: Node[] }[] }
  assertUint(res.v[2]!.v[1]!, big, 'results[2].s')
  assertUint(res.v[3]!.v[1]!, 0xffffffff + 1, 'results[3].s')
})

test('decodeResponse: unknown codes become retry; malformed entries are skipped', () => {
  const buf = enc({
    v: 1,
    batch: 'b',
    results: [
      [0, 1, 9], [0, 2, -1], [0, 3, '0'], [0, 4, null], [0, 5, 1.5], // unknown codes -> retry
      [0, 6, 0, 42], // non-text reason dropped
      'junk', [0, 7], [], [-1, 8, 0], [0, -8, 0], ['0', 9, 0], [0, 1.5, 0], [0, 2 ** 53, 0], null, { p: 0 }, // skipped
      [1, 10, 3, 'bad', 'extra']
    ]
  })
  assert.deepEqual(decodeResponse(buf).results, [
    [0, 1, 2], [0, 2, 2], [0, 3, 2], [0, 4, 2], [0, 5, 2], [0, 6, 0], [1, 10, 3, 'bad']
  ])
})

test('decodeResponse: non-map, wrong v, or results not an array throw', () => {
  for (const v of [[1], 'x', 7, null]) assert.throws(() => decodeResponse(enc(v)), EdgeError)
  assert.throws(() => decodeResponse(enc([1])), DecodeError)
  assert.throws(() => decodeResponse(enc({ v: 2, results: [] })), (e: unknown) => e instanceof ValidationError && e.field === 'v')
  assert.throws(() => decodeResponse(enc({ batch: 'b', results: [] })), (e: unknown) => e instanceof ValidationError && e.field === 'v')
  assert.throws(() => decodeResponse(enc({ v: 1, results: {} })), (e: unknown) => e instanceof ValidationError && e.field === 'results')
  assert.throws(() => decodeResponse(enc({ v: 1 })), (e: unknown) => e instanceof ValidationError && e.field === 'results')
  assert.throws(() => decodeResponse(Buffer.from('{"error":"x"}')), DecodeError)
  assert.throws(() => decodeResponse(new Uint8Array(0)), DecodeError)
  assert.throws(() => decodeResponse(Buffer.concat([Buffer.alloc(1000, 0x81), hex('00')])), DecodeError)
  assert.equal(decodeResponse(enc({ v: 1, results: [] })).batch, '')
})

test('decodeResponse: v of an exotic CBOR type is refused before decoding', () => {
  for (const v of ['c2 41 01', 'd8 1c 81 d8 1d 00']) {
    assert.throws(() => decodeResponse(cmap([['v', hex(v)], ['results', hex('80')]])), (e: unknown) => e instanceof DecodeError && /^CBOR tag (2|28) at byte 3 is not accepted/.test(e.message))
  }
})

// ---- receipts
test('receipts round trip', () => {
  for (const r of [
    { boot: 7, upTo: 12, rejected: [3, 5] },
    { boot: 'b-1', upTo: null, rejected: [] },
    { boot: null, upTo: big, rejected: [big - 1] },
    { boot: big, upTo: 0, rejected: [] }
  ]) assert.deepEqual(decodeReceipt(encodeReceipt(r)), r)
  const parsed = parseAll(encodeReceipt({ boot: big, upTo: big, rejected: [big] }))
  assertUint(field(parsed, 'boot'), big, 'boot')
  assertUint(field(parsed, 'upTo'), big, 'upTo')
  assertUint((field(parsed, 'rejected') as { v: Node[] }).v[0]!, big, 'rejected[0]')
})

test('decodeReceipt: bad upTo throws, bad rejected entries are dropped, non-map and malformed throw', () => {
  assert.throws(() => decodeReceipt(enc({ boot: 1, upTo: -1, rejected: [] })), (e: unknown) => e instanceof ValidationError && e.field === 'upTo')
  assert.throws(() => decodeReceipt(enc({ boot: 1, upTo: 'x', rejected: [] })), (e: unknown) => e instanceof ValidationError && e.field === 'upTo')
  assert.deepEqual(decodeReceipt(enc({ boot: 1, upTo: 3, rejected: [1, -1, 'x', 2.5, 2] })).rejected, [1, 2])
  assert.deepEqual(decodeReceipt(enc({ boot: 1, upTo: 3, rejected: 'x' })).rejected, [])
  for (const b of [enc(null), enc(5), enc('x'), new Uint8Array(0), hex('a1 61'), Buffer.concat([Buffer.alloc(100, 0x81), hex('00')])]) {
    assert.throws(() => decodeReceipt(b), EdgeError)
  }
})

test('decodeReceipt: an array or a bad boot is refused', () => {
  assert.throws(() => decodeReceipt(enc([1, 2])), DecodeError)
  assert.throws(() => decodeReceipt(enc(Buffer.from('ab'))), DecodeError)
  for (const boot of [{ x: 1 }, [1], -1, 1.5, 'x'.repeat(65)]) {
    assert.throws(() => decodeReceipt(enc({ boot, upTo: 1, rejected: [] })), (e: unknown) => e instanceof ValidationError && e.field === 'boot', JSON.stringify(boot))
  }
})
