/**
 * Upstream protocol v2 (docs/protocol-v2.md): lossless round trip to the v1 items (property
 * tests), the float widths and decimal columns, an independent decoder (Python's cbor2),
 * the compact response, and refusal of malformed columnar bodies.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import fc from 'fast-check'
import {
  AckCode, decimalScale, decimalValue, decodeBatchV2, decodeResponseV2, encodeBatchV2, encodeCbor, encodeResponse, encodeResponseV2,
  float16Bits, validateItem, ValidationError, type BatchItem, type ItemResult
} from '../../protocol/index.ts'
import { needTools } from '../helpers/tools.ts'

const env = { gateway: 'gw1', epoch: 'e1', batch: 'b1', floors: [[0, 10]] as [number, number][] }

/** Same value including -0 and float bits. */
function sameItems (got: unknown[], want: readonly BatchItem[]): void {
  assert.equal(got.length, want.length)
  for (let i = 0; i < want.length; i++) {
    const g = validateItem(got[i]) // what the ingest does with every decoded item
    const w = want[i]!
    assert.deepEqual(g.slice(0, 7), w.slice(0, 7), `item ${i}`)
    assert.deepEqual(Object.keys(g[7]), Object.keys(w[7]), `item ${i}: value names in order`)
    for (const k of Object.keys(w[7])) assert.ok(Object.is(g[7][k], w[7][k]), `item ${i} ${k}: ${String(g[7][k])} vs ${String(w[7][k])}`)
  }
}

const name = fc.stringMatching(/^[A-Za-z0-9_.:-]{1,12}$/).filter((n) => n !== '__proto__' && n !== '__proto_')
const device = fc.constantFrom('a', 'b', 'sensor-1', 'sensor-2', 'x.y_z', 'dev-0042')
const finite = fc.double({ noNaN: true, noDefaultInfinity: true })
const value = fc.oneof(
  finite,
  fc.integer({ min: -1e6, max: 1e6 }).map((m) => m / 100), // decimal sensor values
  fc.constantFrom(0, -0, 1.5, 0.1, 1e-7, 65504, 5.960464477539063e-8, 2 ** 53 - 1, -(2 ** 53) + 1, 1e300),
  fc.maxSafeInteger(),
  fc.boolean(),
  fc.string({ maxLength: 20 })
)
const boot = fc.oneof(fc.constant(null), fc.constantFrom(1, 2, 1_795_750_000_000), fc.constantFrom('b1', 'boot-2'))
const item = fc.tuple(
  fc.integer({ min: 0, max: 3 }), device, fc.option(fc.integer({ min: 0, max: 2 ** 53 - 1 })), boot,
  fc.option(fc.integer({ min: 0, max: 2 ** 53 - 1 })), fc.integer({ min: 0, max: 2 ** 53 - 1 }),
  fc.dictionary(name, value, { minKeys: 1, maxKeys: 6 })
)
const items = fc.array(item, { minLength: 1, maxLength: 60 }).map((xs) => {
  // the gateway sends each partition's seqs increasing, with gaps where items were settled
  let s = 1000
  return xs.map(([p, d, seq, b, ts, rx, values], i): BatchItem => [p, (s += 1 + (i % 3 === 0 ? 5 : 0)), d, seq, b, ts, rx, values])
})

test('v2 round-trips any valid batch to exactly the v1 items, floats bit for bit', () => {
  fc.assert(fc.property(items, (xs) => {
    const back = decodeBatchV2(encodeBatchV2(env, xs), { maxItems: 10_000 })
    sameItems(back.items, xs)
    assert.deepEqual(back.floors, env.floors)
  }), { numRuns: 400 })
})

test('v2 keeps -0, float16/32 widths and decimal columns exact', () => {
  const values = [0.1, -0, 1.5, 65504, 1 / 3, 21.37, 1013.25, 1e300, -2.5e-5, 3.4028234663852886e38]
  const xs: BatchItem[] = values.map((v, i) => [0, i + 1, 'd', i, null, null, 100 + i, { v, w: -values[i]!, [`x${i}`]: v }])
  const back = decodeBatchV2(encodeBatchV2(env, xs), { maxItems: 100 })
  sameItems(back.items, xs)
  assert.equal(float16Bits(1.5), 0x3e00)
  assert.equal(float16Bits(-0), 0x8000)
  assert.equal(float16Bits(65504), 0x7bff)
  assert.equal(float16Bits(5.960464477539063e-8), 0x0001) // smallest subnormal
  assert.equal(float16Bits(0.1), -1)
  assert.equal(decimalScale(21.37), 2)
  assert.equal(decimalValue(2137, 2), 21.37)
  assert.equal(decimalScale(1 / 3), -1)
  assert.equal(decimalScale(-0), -1)
})

test('a decimal column carries the values its scale cannot hold (-0, 1/3) as escapes', () => {
  const vs = [21.5, -0, 21.75, 1 / 3, 22, 22.25, 22.5, 22.75, 23, 23.25, 23.5, 23.75, 24, 24.25, 24.5, 24.75, 25, 25.25]
  const xs: BatchItem[] = vs.map((v, i) => [0, i + 1, i % 2 ? 'a' : 'b', i, null, null, 100 + i, { t: v }])
  const body = encodeBatchV2(env, xs)
  sameItems(decodeBatchV2(body, { maxItems: 100 }).items, xs)
  needTools('cbor2')
  const py = spawnSync('/usr/bin/python3', ['-c', 'import sys,cbor2,json; print(json.dumps(cbor2.loads(sys.stdin.buffer.read())["cols"][0][:2]))'], { input: body, encoding: 'utf8' })
  assert.equal(py.status, 0, py.stderr)
  const cols = JSON.parse(py.stdout) as unknown[]
  assert.deepEqual(cols, [1, 2], 'still a decimal column with scale 2')
})

test('v2 carries boot changes, null seq and ts, and devices interleaved', () => {
  const xs: BatchItem[] = [
    [1, 5, 'a', 7, 'b1', 1000, 2000, { t: 1 }],
    [1, 6, 'b', null, null, null, 2001, { t: 2, ok: true }],
    [1, 7, 'a', 1, 'b2', 900, 2002, { t: 3 }],
    [1, 8, 'a', 2, 'b2', null, 2003, { ok: false, t: 4 }],
    [2, 100, 'b', 3, 7, 5, 1999, { s: 'text' }]
  ]
  sameItems(decodeBatchV2(encodeBatchV2(env, xs), { maxItems: 10 }).items, xs)
})

test('a v2 body is standard CBOR: Python cbor2 decodes it to the documented columns', () => {
  const xs: BatchItem[] = [
    [3, 250000, 'sim-0001', 1000, 1795750000000, 1795759000000, 1795759000007, { temperature_c: 21.37, door_open: false }],
    [3, 250001, 'sim-0002', 1000, 1795750000000, 1795759000010, 1795759000017, { temperature_c: 19.5, door_open: true }]
  ]
  const body = encodeBatchV2(env, xs)
  needTools('cbor2')
  const py = spawnSync('/usr/bin/python3', ['-c', `
import sys, json, cbor2
d = cbor2.loads(sys.stdin.buffer.read())
print(json.dumps({k: d[k] for k in ['v', 'n', 'p', 's', 'dev', 'di', 'seq', 'ts', 'rx', 'names', 'cols'] if k != 'cols'} | {'cols': [c if c[0] != 0 else [0, list(c[1])] for c in d['cols']]}))
`], { input: body, encoding: 'utf8' })
  assert.equal(py.status, 0, `python3 with cbor2 (Debian python3-cbor2) must decode the body: ${py.stderr}`)
  const d = JSON.parse(py.stdout) as Record<string, unknown>
  assert.deepEqual(d, {
    v: 2, n: 2, p: [3, 2], s: [250000, 2], dev: ['sim-0001', 'sim-0002'], di: [0, 1], seq: [1000, 0],
    ts: [-7, 0], rx: [1795759000007, 10], names: ['temperature_c', 'door_open'],
    cols: [[1, 2, 2137, -187], [0, [2]]]
  })
})

test('a value named __proto__ reaches validation through v2 and is refused, never dropped or renamed', () => {
  const values = JSON.parse('{"__proto__": 1, "t": 2}') as Record<string, number>
  const back = decodeBatchV2(encodeBatchV2(env, [[0, 1, 'a', null, null, null, 5, values]]), { maxItems: 10 })
  assert.throws(() => validateItem(back.items[0]), (err: unknown) => err instanceof ValidationError && err.field === 'values.__proto__')
  // v1 and device payloads: cbor-x renames the key to __proto_, which is refused as well
  assert.throws(() => validateItem([0, 1, 'a', null, null, null, 5, { __proto_: 1 }]), /reserved/)
})

test('the v2 response is runs of codes, expanded back to one result per item', () => {
  const results: ItemResult[] = [
    [0, 1, AckCode.Stored], [0, 2, AckCode.Stored], [0, 3, AckCode.Duplicate], [0, 5, AckCode.Stored],
    [0, 6, AckCode.Rejected, 'values.t: must be finite'], [1, 7, AckCode.Retry]
  ]
  const body = encodeResponseV2({ batch: 'b9', results })
  const v1 = encodeResponse({ batch: 'b9', results }).length
  assert.ok(body.length < v1, `v2 response ${body.length} bytes, v1 ${v1}`)
  assert.deepEqual(decodeResponseV2(body), { v: 1, batch: 'b9', results })
})

test('malformed v2 bodies are whole-batch validation errors naming the field', () => {
  const good = { v: 2, gateway: 'gw1', epoch: 'e', batch: 'b', floors: [], n: 1, p: [0, 1], s: [5, 1], dev: ['a'], di: [0], boot: [null], bootAt: [], seq: [null], ts: [null], rx: [1], names: ['t'], shapes: [[0]], devShape: [0], shapeAt: [], cols: [[1, 0, 3]] }
  sameItems(decodeBatchV2(encodeCbor(good), { maxItems: 10 }).items, [[0, 5, 'a', null, null, null, 1, { t: 3 }]])
  const cases: [Partial<Record<keyof typeof good, unknown>>, string][] = [
    [{ v: 1 }, 'v'], [{ n: 2 }, 'p'], [{ s: [5, 2] }, 's[1]'], [{ di: [1] }, 'di[0]'], [{ cols: [[1, 0]] }, 'cols[0]'],
    [{ cols: [[9, 0, 3]] }, 'cols[0]'], [{ shapes: [[0, 0]] }, 'shapes[0]'], [{ rx: [2 ** 53] }, 'rx[0]'],
    [{ bootAt: [4, 'x'] }, 'bootAt'], [{ n: 20 }, 'items'], [{ cols: [[2, [99, 1]]] }, 'cols[0] at item 0'],
    [{ devShape: [3] }, 'devShape[0]'], [{ shapeAt: [0, 5] }, 'shapeAt[1]'], [{ cols: [[1, 0, ['x']]] }, 'cols[0] at item 0']
  ]
  for (const [patch, field] of cases) {
    assert.throws(() => decodeBatchV2(encodeCbor({ ...good, ...patch }), { maxItems: 10 }), (err: unknown) => {
      assert.ok(err instanceof ValidationError, `${JSON.stringify(patch)}: ${String(err)}`)
      assert.equal(err.field, field, `${JSON.stringify(patch)}: ${err.message}`)
      return true
    })
  }
})

test('v2 is several times smaller than v1 on sensor readings', () => {
  const xs: BatchItem[] = Array.from({ length: 500 }, (_, i) => [3, 1000 + i, `sim-${i % 100}`, 10 + Math.floor(i / 100), 17, 1_795_759_000_000 + i * 10, 1_795_759_000_007 + i * 10, { temp: Math.round(2000 + 300 * Math.sin(i)) / 100, ok: i % 7 === 0 }])
  const v2 = encodeBatchV2(env, xs).length / xs.length
  assert.ok(v2 < 12, `${v2.toFixed(1)} bytes per reading`)
})
