/**
 * Fuzzing of the payload decoder (decodeReading) and of the ingest body decoder
 * (decodeBatch + validateItem), plus the gateway's response decoder (decodeResponse).
 *
 * Property: each call returns a value of the documented shape, or throws a DecodeError or
 * ValidationError. Never another error (TypeError, RangeError, BigInt mixing...), never a hang.
 *
 * Inputs: a seeded mutator over valid samples. Samples are built as trees of CBOR parts, so
 * a mutation can replace any node with a random or hostile item (tags, BigInt, cycles, NaN,
 * huge lengths, indefinite items...); byte-level mutations (bit flips, truncation, inserted
 * bytes, length inflation) then go on top. Each decoder runs in a worker thread that marks
 * its progress in shared memory: a case that hangs is killed and reported by its index.
 * fast-check adds generated structured inputs (its own seed) on the main thread.
 *
 * A structure-aware generator (cbor-arbitrary.ts: every tag number class, bignums
 * of up to 60 KiB, indefinite lengths, nesting thousands deep) through every untrusted
 * decoder and the dead-letter view, with a time bound per input (STRUCT_BOUND_MS).
 *
 * Reproduce: FUZZ_SEED=<printed seed> [FUZZ_CASES=n] node --import tsx --test test/faults/fuzz-decoders.test.ts
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import fc from 'fast-check'
import {
  decodeBatch, decodeResponse, encodeBatch, encodeResponse, itemKey, validateItem, type BatchItem, type ItemResult
} from '../../protocol/batch.ts'
import { encodeCbor, wireUint } from '../../protocol/cbor.ts'
import { DecodeError, ValidationError } from '../../protocol/errors.ts'
import { decodeReading, READING_LIMITS, VALUE_NAME_RE, type Reading } from '../../protocol/reading.ts'
import { decodeReceipt } from '../../protocol/batch.ts'
import { decodeBatchV2 } from '../../protocol/batch-v2-decode.ts'
import { decodeResponseV2 } from '../../protocol/batch-v2.ts'
import { decodeForView, jsonSafe } from '../../gateway/dlq/render.ts'
import { cborItem, deepItem, placed, type Target as CborTarget } from './cbor-arbitrary.ts'
import { DEVICE_ID_RE } from '../../protocol/topics.ts'
import { mulberry32 } from '../../common/random.ts'

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed2024) >>> 0
const CASES = Number(process.env.FUZZ_CASES ?? 100_000)
const MAX_PAYLOAD = 16 * 1024
const MAX_ITEMS = 50
const HANG_MS = 10_000
/**
 * Time bound of one structure-aware input through one decoder. Measured on the
 * shared 2-core box (load 8-30): the slowest input of 6 x 1,500 took 3-9 ms (a 60 KiB
 * bignum's scan, the 8 MiB-free deep-nesting refusals); the quadratic bignum build this
 * guards against took 25 ms (16 KiB) to 420 ms (64 KiB). An input over the bound is timed
 * twice more and only the fastest run counts, so a descheduled process is not a failure
 * while a slow decoder, slow every time, is.
 */
const STRUCT_BOUND_MS = Number(process.env.FUZZ_BOUND_MS ?? 50)
const STRUCT_RUNS = Number(process.env.FUZZ_STRUCT_RUNS ?? 1500)

type Target = 'reading' | 'batch' | 'response'
type Violation = { index: number, input: string, error: string }
type Report = { target: Target, cases: number, ms: number, ok: number, decodeErrors: number, validationErrors: number, itemsValidated: number, slowestMs: number, violations: Violation[], violationCount: number, kinds: Record<string, number> }

// ---------------------------------------------------------------- seeded randomness
class Rng {
  /** protocol's mulberry32: the same sequence per seed as before */
  readonly next: () => number
  constructor (seed: number) { this.next = mulberry32(seed >>> 0 || 1) }
  int (n: number): number { return Math.floor(this.next() * n) }
  bool (p = 0.5): boolean { return this.next() < p }
  pick<T> (a: readonly T[]): T { return a[this.int(a.length)]! }
  bytes (n: number): Buffer { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) b[i] = this.int(256); return b }
}

// ---------------------------------------------------------------- CBOR part trees
type Part = { raw: Buffer } | { arr: Part[], indef?: boolean } | { map: [Part, Part][], indef?: boolean }

function head (major: number, n: number): Buffer {
  const m = major << 5
  if (n < 24) return Buffer.from([m | n])
  if (n < 0x100) return Buffer.from([m | 24, n])
  if (n < 0x10000) return Buffer.from([m | 25, n >> 8, n & 0xff])
  const b = Buffer.alloc(5); b[0] = m | 26; b.writeUInt32BE(n, 1); return b
}
function serialize (p: Part, out: Buffer[] = []): Buffer[] {
  if ('raw' in p) out.push(p.raw)
  else if ('arr' in p) {
    out.push(p.indef ? Buffer.from([0x9f]) : head(4, p.arr.length))
    for (const x of p.arr) serialize(x, out)
    if (p.indef) out.push(Buffer.from([0xff]))
  } else {
    out.push(p.indef ? Buffer.from([0xbf]) : head(5, p.map.length))
    for (const [k, v] of p.map) { serialize(k, out); serialize(v, out) }
    if (p.indef) out.push(Buffer.from([0xff]))
  }
  return out
}
const bytesOf = (p: Part): Buffer => Buffer.concat(serialize(p))
/** Leaves are encoded by the real encoder; uint fields are passed in as wireUint() already. */
function toPart (v: unknown): Part {
  if (Array.isArray(v)) return { arr: v.map(toPart) }
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) return { map: Object.entries(v).map(([k, x]) => [{ raw: encodeCbor(k) }, toPart(x)]) }
  return { raw: encodeCbor(v) }
}
const wu = (n: number | string | null): unknown => typeof n === 'number' ? wireUint(n) : n
function nodes (p: Part, out: { parent: Part | null, part: Part }[] = [], parent: Part | null = null): { parent: Part | null, part: Part }[] {
  out.push({ parent, part: p })
  if ('arr' in p) for (const x of p.arr) nodes(x, out, p)
  if ('map' in p) for (const [k, v] of p.map) { nodes(k, out, p); nodes(v, out, p) }
  return out
}
const clone = (p: Part): Part => 'raw' in p ? { raw: p.raw } : 'arr' in p ? { arr: p.arr.map(clone), indef: p.indef } : { map: p.map.map(([k, v]) => [clone(k), clone(v)]), indef: p.indef }

// ---------------------------------------------------------------- hostile items
const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const HOSTILE: Buffer[] = [
  h('c2 41 01'), h('c3 42 0102'), h('c2 49 010000000000000000'), // bignums -> BigInt
  h('d8 1c 81 d8 1d 00'), h('d8 1c a1 61 61 d8 1d 00'), h('d8 1d 00'), h('d8 1d 05'), // shared refs, cycles
  h('d9 0103 a1 61 61 01'), h('d9 0103 a1 a1 68 746f537472696e67 01 01'), h('d9 0103 a1 a1 67 76616c75654f66 01 01'), h('d9 0103 a1 80 01'), // tag 259 Maps, hostile keys
  h('d9 0102 83 01 02 03'), h('d8 1b 82 66 526567457870 62 612b'), h('d8 1b 82 65 4572726f72 61 78'), // sets, generic objects
  h('d8 69 83 19 e000 81 61 61 01'), h('d9 e000 81 01'), h('d9 dffe 83 19 e000 81 61 62 00'), h('d9 dff9 80'), // records, bundles
  h('c1 1a 65000000'), h('c0 74 323032342d30312d30315430303a30303a30305a'), h('c4 82 21 19 6ab3'), h('c5 82 20 03'), // dates, fractions
  h('d8 33 84 80 80 80 00'), h('d8 06 00'), h('d8 e1 00'), h('d9 7020 61 61'), // packed values
  h('f9 7e00'), h('f9 7c00'), h('f9 fc00'), h('fa 7fc00000'), h('fb 7ff8000000000000'), h('fb fff0000000000000'), h('f9 8000'), h('fb 4340000000000000'),
  h('f7'), h('f6'), h('f8 14'), h('f8 ff'), h('e0'), h('f3'),
  h('1b ffffffffffffffff'), h('1b 0020000000000000'), h('1b 001fffffffffffff'), h('3b ffffffffffffffff'), h('20'),
  h('9b ffffffffffffffff'), h('bb 00000000ffffffff'), h('5b 0000000100000000'), h('7a ffffffff'),
  h('7f 61 61 ff'), h('5f 41 01 ff'), h('9f ff'), h('bf ff'), h('bf 61 61 ff'),
  Buffer.concat([Buffer.alloc(12, 0x81), h('00')]), Buffer.concat([Buffer.alloc(12, 0xc6), h('00')]),
  encodeCbor('__proto__'), encodeCbor('__proto_'), encodeCbor('constructor'), encodeCbor('toString'), encodeCbor('v'), encodeCbor('values'),
  encodeCbor('x'.repeat(300)), encodeCbor('é'.repeat(129)), encodeCbor(''), h('62 c328'), h('63 eda080'),
  encodeCbor(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`v${i}`, i])))
]
const KEYS = ['seq', 'boot', 'ts', 'values', 'v', 'gateway', 'epoch', 'batch', 'items', 'floors', 'evicted', 'results', '__proto__', 'constructor', 'toString', 'a', '']

/** A random item: well-formed or nearly, nested up to `depth`. */
function randomItem (r: Rng, depth: number): Buffer {
  if (r.bool(0.2)) return r.pick(HOSTILE)
  const k = r.int(depth > 0 ? 12 : 8)
  switch (k) {
    case 0: return r.pick(HOSTILE)
    case 1: { // an integer with a random (possibly non-minimal) width
      const major = r.int(2); const ai = r.pick([r.int(24), 24, 25, 26, 27])
      return Buffer.concat([Buffer.from([(major << 5) | ai]), r.bytes(ai < 24 ? 0 : 1 << (ai - 24))])
    }
    case 2: return encodeCbor(r.pick(KEYS))
    case 3: { const n = r.int(9); return Buffer.concat([head(r.pick([2, 3]), n), r.bytes(n)]) } // bytes or (maybe invalid UTF-8) text
    case 4: { const ib = r.pick([0xf9, 0xfa, 0xfb]); return Buffer.concat([Buffer.from([ib]), r.bytes(ib === 0xf9 ? 2 : ib === 0xfa ? 4 : 8)]) } // random float bits
    case 5: return encodeCbor(r.pick([0, 1, 2, 3, 7, 2 ** 32, -1, 1.5, true, false, null, 'dev-1', 'x']))
    case 6: return Buffer.from([r.int(256)])
    case 7: return encodeCbor(wireUint(r.pick([2 ** 53 - 1, 2 ** 40, 0xffffffff, 0x100000000])))
    case 8: case 9: { // array, sometimes indefinite
      const n = r.int(4); const items = Array.from({ length: n }, () => randomItem(r, depth - 1))
      return r.bool(0.2) ? Buffer.concat([h('9f'), ...items, h('ff')]) : Buffer.concat([head(4, n), ...items])
    }
    case 10: { // map with interesting keys
      const n = r.int(3); const pairs = Array.from({ length: n }, () => [r.bool(0.7) ? encodeCbor(r.pick(KEYS)) : randomItem(r, depth - 1), randomItem(r, depth - 1)]).flat()
      return r.bool(0.2) ? Buffer.concat([h('bf'), ...pairs, h('ff')]) : Buffer.concat([head(5, n), ...pairs])
    }
    default: { // a tag around an item
      const tag = r.pick([0, 1, 2, 3, 4, 5, 6, 14, 15, 21, 24, 25, 27, 28, 29, 30, 32, 51, 55, 64, 72, 85, 105, 225, 256, 258, 259, 0xdff9, 0xdffe, 0xdfff, 0xe000, 55799, r.int(70000)])
      return Buffer.concat([tag < 24 ? Buffer.from([0xc0 | tag]) : tag < 256 ? Buffer.from([0xd8, tag]) : tag < 65536 ? Buffer.from([0xd9, tag >> 8, tag & 0xff]) : h('da 00010000'), randomItem(r, depth - 1)])
    }
  }
}

/** Structure-aware mutations on a part tree, then byte-level ones on the bytes. */
function mutate (r: Rng, sample: Part): Buffer {
  let bytes: Buffer
  if (r.bool(0.7)) {
    const root = clone(sample)
    for (let m = 1 + r.int(3); m > 0; m--) {
      const all = nodes(root)
      const { part } = all[r.int(all.length)]!
      const op = r.int(6)
      if ('map' in part && op === 0 && part.map.length) part.map.splice(r.int(part.map.length), 1) // drop a field
      else if ('map' in part && op === 1) part.map.push([{ raw: r.bool(0.8) ? encodeCbor(r.pick(KEYS)) : randomItem(r, 1) }, { raw: randomItem(r, 3) }]) // add/duplicate
      else if ('arr' in part && op === 0 && part.arr.length) part.arr.splice(r.int(part.arr.length), 1)
      else if ('arr' in part && op === 1) part.arr.push({ raw: randomItem(r, 3) })
      else if (('arr' in part || 'map' in part) && op === 2) part.indef = !part.indef
      else if ('map' in part && op === 3 && part.map.length) part.map[r.int(part.map.length)]![1] = { raw: randomItem(r, 3) }
      else if ('arr' in part && op === 3 && part.arr.length) part.arr[r.int(part.arr.length)] = { raw: randomItem(r, 3) }
      else if ('raw' in part) (part as { raw: Buffer }).raw = randomItem(r, 3)
    }
    bytes = bytesOf(root)
    if (r.bool(0.7)) return bytes
  } else bytes = bytesOf(sample)
  return mutateBytes(r, bytes)
}

function mutateBytes (r: Rng, input: Buffer): Buffer {
  let b: Buffer = Buffer.from(input)
  for (let m = 1 + r.int(4); m > 0; m--) {
    if (b.length === 0) b = r.bytes(1 + r.int(8))
    const at = r.int(b.length)
    switch (r.int(8)) {
      case 0: b[at] = b[at]! ^ (1 << r.int(8)); break // bit flip
      case 1: b[at] = r.int(256); break
      case 2: b = b.subarray(0, at); break // truncate
      case 3: b = Buffer.concat([b.subarray(0, at), r.bytes(1 + r.int(8)), b.subarray(at)]); break // insert
      case 4: b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + r.int(8))]); break // delete
      case 5: { // length inflation: a string/array/map head gets a 4- or 8-byte huge argument
        const heads = [...b.keys()].filter((i) => { const mj = b[i]! >> 5; return mj >= 2 && mj <= 5 })
        if (heads.length) {
          const i = r.pick(heads); const mj = b[i]! >> 5
          const arg = r.pick([h('ffffffff'), h('ffffffffffffffff'), h('00000000ffffffff'), h('0000000100000000'), r.bytes(4)])
          b = Buffer.concat([b.subarray(0, i), Buffer.from([(mj << 5) | (arg.length === 4 ? 26 : 27)]), arg, b.subarray(i + 1)])
        }
        break
      }
      case 6: b = Buffer.concat([b.subarray(0, at), r.pick(HOSTILE), b.subarray(at + r.int(4))]); break // splice
      default: { const n = 1 + r.int(Math.min(16, b.length)); b = Buffer.concat([b.subarray(0, at), b.subarray(at, at + n), b.subarray(at)]) } // duplicate a run
    }
  }
  return b
}

// ---------------------------------------------------------------- valid samples
const NAMES = ['t', 'temp', 'hum', 'p.1', 'bat:v', 'a-b_c', 'x'.repeat(64), 'on']
function randomValues (r: Rng): Record<string, unknown> {
  const v: Record<string, unknown> = {}
  for (let n = 1 + r.int(6); n > 0; n--) {
    v[r.bool(0.8) ? r.pick(NAMES) : `v${r.int(100)}`] = r.pick([r.int(1000), -r.int(1000), r.next() * 100, true, false, 'ok', 'ü€😀', 'é'.repeat(128), 2 ** 40])
  }
  return v
}
function readingSample (r: Rng): { part: Part, json: string | null } {
  const o: Record<string, unknown> = {}
  if (r.bool(0.8)) o.seq = r.pick([0, r.int(1e6), 2 ** 32 + r.int(1e6), 2 ** 53 - 1])
  if (r.bool(0.6)) o.boot = r.pick([r.int(100), 'b-' + r.int(100), 'x'.repeat(64), 2 ** 40])
  if (r.bool(0.6)) o.ts = 1_700_000_000_000 + r.int(1e9)
  o.values = randomValues(r)
  if (r.bool(0.25)) return { part: toPart(o), json: JSON.stringify(o) }
  return { part: toPart({ ...o, ...('seq' in o ? { seq: wu(o.seq as number) } : {}), ...('boot' in o ? { boot: wu(o.boot as number) } : {}), ...('ts' in o ? { ts: wu(o.ts as number) } : {}) }), json: null }
}
function batchItem (r: Rng, i: number): BatchItem {
  return [r.int(8), r.pick([i, 2 ** 33 + i]), r.pick(['dev-1', 'd.2', 'x'.repeat(64)]), r.pick([null, i, 2 ** 40]), r.pick([null, 3, 'boot-a']), r.pick([null, 1_700_000_000_000 + i]), 1_700_000_000_000 + i, randomValues(r) as BatchItem[7]]
}
function batchSample (r: Rng): Part {
  const items = Array.from({ length: 1 + r.int(4) }, (_, i) => batchItem(r, i))
  const evicted = r.bool(0.3) ? [[1, 5, 9] as [number, number, number]] : []
  const body = encodeBatch({ gateway: 'gw-1', epoch: 'e1', batch: 'b1', floors: [[0, 1], [3, 2 ** 35]], evicted, items })
  // rebuild the same document as a part tree so mutations can target any node
  const env: Record<string, unknown> = {
    v: 1, gateway: 'gw-1', epoch: 'e1', batch: 'b1',
    items: items.map(([p, s, d, seq, boot, ts, rx, values]) => [p, wu(s), d, wu(seq), wu(boot), wu(ts), wu(rx), values]),
    floors: [[0, 1], [3, wireUint(2 ** 35)]]
  }
  if (evicted.length) env.evicted = evicted.map(([p, a, b]) => [p, wu(a), wu(b)])
  const part = toPart(env)
  assert.equal(bytesOf(part).toString('hex'), body.toString('hex'), 'sample tree must match the real encoder')
  return part
}
function responseSample (r: Rng): Part {
  const results: ItemResult[] = Array.from({ length: r.int(5) }, (_, i) => r.bool(0.3) ? [r.int(8), i, 3, 'bad'] : [r.int(8), r.pick([i, 2 ** 36]), r.pick([0, 1, 2]) as 0 | 1 | 2])
  const body = encodeResponse({ batch: 'b1', results })
  const part = toPart({ v: 1, batch: 'b1', results: results.map((x) => { const c: unknown[] = x.slice(); c[1] = wireUint(x[1]); return c }) })
  assert.equal(bytesOf(part).toString('hex'), body.toString('hex'), 'sample tree must match the real encoder')
  return part
}

// ---------------------------------------------------------------- shape checks (the documented contract)
const isUint = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
function checkValues (v: unknown): string | null {
  if (v === null || typeof v !== 'object') return 'values not an object'
  const keys = Object.keys(v)
  if (keys.length < 1 || keys.length > READING_LIMITS.maxValues) return `values has ${keys.length} entries`
  for (const k of keys) {
    if (!VALUE_NAME_RE.test(k)) return `bad value name ${JSON.stringify(k)}`
    const x = (v as Record<string, unknown>)[k]
    if (typeof x === 'number' ? !Number.isFinite(x) : typeof x === 'string' ? Buffer.byteLength(x) > READING_LIMITS.maxTextBytes : typeof x !== 'boolean') return `bad value ${k}`
  }
  return null
}
const checkBoot = (b: unknown): boolean => b === null || isUint(b) || (typeof b === 'string' && Buffer.byteLength(b) <= READING_LIMITS.maxBootBytes)
function checkReading (r: Reading): string | null {
  if (Object.keys(r).sort().join() !== 'boot,seq,ts,values') return `keys ${Object.keys(r).join()}`
  if (r.seq !== null && !isUint(r.seq)) return `seq ${String(r.seq)}`
  if (r.ts !== null && !isUint(r.ts)) return `ts ${String(r.ts)}`
  if (!checkBoot(r.boot)) return `boot ${String(r.boot)}`
  return checkValues(r.values)
}
function checkItem (it: BatchItem): string | null {
  const [p, s, device, seq, boot, ts, rx, values] = it
  if (it.length !== 8) return 'item length'
  if (!isUint(p) || p > 0xffff || !isUint(s) || !isUint(rx)) return 'p/s/rx'
  if (typeof device !== 'string' || !DEVICE_ID_RE.test(device)) return 'device'
  if ((seq !== null && !isUint(seq)) || (ts !== null && !isUint(ts)) || !checkBoot(boot)) return 'seq/ts/boot'
  return checkValues(values)
}
const uintTuple = (t: unknown, n: number): boolean => Array.isArray(t) && t.length === n && t.every(isUint)

// ---------------------------------------------------------------- one fuzz run (in a worker)
const isProtocolError = (err: unknown): boolean => err instanceof DecodeError || err instanceof ValidationError
const describeErr = (err: unknown): string => err instanceof Error ? `${err.name}: ${err.message}`.slice(0, 200) : `thrown non-Error ${String(err)}`

function runFuzz (target: Target, seed: number, cases: number, progress: Int32Array | null): Report {
  const r = new Rng(seed ^ { reading: 0x1111, batch: 0x2222, response: 0x3333 }[target])
  const rep: Report = { target, cases: 0, ms: 0, ok: 0, decodeErrors: 0, validationErrors: 0, itemsValidated: 0, slowestMs: 0, violations: [], violationCount: 0, kinds: {} }
  const samples: { part: Part, json: string | null }[] = Array.from({ length: 64 }, () =>
    target === 'reading' ? readingSample(r) : { part: target === 'batch' ? batchSample(r) : responseSample(r), json: null })
  const fail = (index: number, input: Uint8Array, error: string): void => {
    rep.violationCount++
    const kind = error.replace(/\s+/g, ' ').slice(0, 90)
    rep.kinds[kind] = (rep.kinds[kind] ?? 0) + 1
    if (rep.violations.length < 3) rep.violations.push({ index, input: Buffer.from(input).toString('hex').slice(0, 400), error })
  }
  const t0 = performance.now()
  for (let i = 0; i < cases; i++) {
    if (progress && (i & 255) === 0) Atomics.store(progress, 0, i)
    const s = samples[r.int(samples.length)]!
    const input = s.json !== null
      ? (r.bool(0.5) ? mutateBytes(r, Buffer.from(s.json)) : Buffer.from(s.json.replace(/:[^,{}]+/, ':' + r.pick(['1e999', '-0', 'null', '[[[[]]]]', '{"__proto__":1}', '"\\ud800"', '9007199254740993', '"' + 'é'.repeat(200) + '"']))))
      : mutate(r, s.part)
    const c0 = performance.now()
    try {
      if (target === 'reading') {
        const out = decodeReading(input, MAX_PAYLOAD)
        const bad = checkReading(out)
        if (bad) fail(i, input, `returned a bad reading: ${bad}`)
      } else if (target === 'batch') {
        const out = decodeBatch(input, { maxItems: MAX_ITEMS })
        if (out.v !== 1 || typeof out.gateway !== 'string' || typeof out.epoch !== 'string' || typeof out.batch !== 'string' || !Array.isArray(out.items) || out.items.length > MAX_ITEMS) fail(i, input, 'bad envelope')
        if (!out.floors.every((f) => uintTuple(f, 2)) || (out.evicted && !out.evicted.every((e) => uintTuple(e, 3) && e[1] <= e[2]))) fail(i, input, 'bad floors/evicted')
        for (const raw of out.items) {
          const key = itemKey(raw)
          if (key !== null && !uintTuple(key, 2)) fail(i, input, 'bad itemKey')
          rep.itemsValidated++
          try {
            const bad = checkItem(validateItem(raw))
            if (bad) fail(i, input, `validateItem returned a bad item: ${bad}`)
          } catch (err) {
            // the ingest answers an invalid item alone only if it is a ValidationError; anything else fails the batch
            if (!(err instanceof ValidationError)) fail(i, input, `validateItem threw ${describeErr(err)}`)
          }
        }
      } else {
        const out = decodeResponse(input)
        if (out.v !== 1 || typeof out.batch !== 'string' || !Array.isArray(out.results)) fail(i, input, 'bad response envelope')
        for (const res of out.results) {
          if (!isUint(res[0]) || !isUint(res[1]) || ![0, 1, 2, 3].includes(res[2]) || (res.length === 4 && typeof res[3] !== 'string') || res.length > 4) fail(i, input, `bad result ${String(res)}`)
        }
      }
      rep.ok++
    } catch (err) {
      if (err instanceof DecodeError) rep.decodeErrors++
      else if (err instanceof ValidationError) rep.validationErrors++
      if (!isProtocolError(err)) fail(i, input, `threw ${describeErr(err)}`)
    }
    const dt = performance.now() - c0
    if (dt > rep.slowestMs) rep.slowestMs = dt
    rep.cases++
  }
  rep.ms = performance.now() - t0
  if (progress) Atomics.store(progress, 0, cases)
  return rep
}

if (!isMainThread && (workerData as { fuzz?: boolean } | null)?.fuzz) {
  const d = workerData as { target: Target, seed: number, cases: number, progress: SharedArrayBuffer }
  parentPort!.postMessage(runFuzz(d.target, d.seed, d.cases, new Int32Array(d.progress)))
}

/** Runs one target in a worker; a case that does not return within HANG_MS is a hang. */
function fuzzInWorker (target: Target): Promise<Report> {
  const progress = new SharedArrayBuffer(4)
  const cur = new Int32Array(progress)
  // tsx's loader does not reach worker threads on Node 20: load this file through its API
  const boot = `import('tsx/esm/api').then((m) => m.tsImport(${JSON.stringify(import.meta.url)}, ${JSON.stringify(import.meta.url)}))`
  const w = new Worker(boot, { eval: true, workerData: { fuzz: true, target, seed: SEED, cases: CASES, progress } })
  return new Promise((resolve, reject) => {
    let last = -1
    let lastChange = Date.now()
    const timer = setInterval(() => {
      const now = Atomics.load(cur, 0)
      if (now !== last) { last = now; lastChange = Date.now(); return }
      if (Date.now() - lastChange > HANG_MS) {
        clearInterval(timer)
        void w.terminate()
        reject(new Error(`${target}: no progress for ${HANG_MS} ms near case ${now} (seed ${SEED}): a decoder hangs`))
      }
    }, 250)
    w.once('message', (m: Report) => { clearInterval(timer); void w.terminate(); resolve(m) })
    w.once('error', (err) => { clearInterval(timer); reject(err) })
    w.once('exit', (code) => { clearInterval(timer); if (code !== 0) reject(new Error(`${target} fuzz worker exited with ${code} (seed ${SEED})`)) })
  })
}

function assertReport (t: { diagnostic: (s: string) => void }, rep: Report): void {
  t.diagnostic(`${rep.target}: ${rep.cases} cases in ${Math.round(rep.ms)} ms (seed 0x${SEED.toString(16)}): ` +
    `${rep.ok} decoded, ${rep.decodeErrors} DecodeError, ${rep.validationErrors} ValidationError` +
    `${rep.target === 'batch' ? `, ${rep.itemsValidated} items validated` : ''}; slowest case ${rep.slowestMs.toFixed(1)} ms`)
  for (const [kind, n] of Object.entries(rep.kinds)) t.diagnostic(`violations: ${n} x ${kind}`)
  for (const v of rep.violations) t.diagnostic(`e.g. case ${v.index}: ${v.error}; input 0x${v.input}`)
  assert.equal(rep.cases, CASES)
  // the mutator must reach both sides of the property, or it tests nothing
  assert.ok(rep.ok > CASES / 100, `only ${rep.ok} inputs decoded: mutations too destructive`)
  assert.ok(rep.decodeErrors > CASES / 100 && rep.validationErrors > CASES / 100, 'both error kinds must be exercised')
  assert.equal(rep.violationCount, 0, `${rep.violationCount} inputs broke the property; first: ${rep.violations[0]?.error}`)
  // generous: a shared CI box can stall a worker for a while; real blow-ups (quadratic work) are far above
  assert.ok(rep.slowestMs < 5000, `slowest case took ${rep.slowestMs} ms`)
}

if (isMainThread) {
  describe('decoder fuzzing', { concurrency: 2 }, () => {
    test(`decodeReading: ${CASES} mutated CBOR and JSON payloads`, { timeout: 120_000 }, async (t) => {
      assertReport(t, await fuzzInWorker('reading'))
    })

    test(`decodeBatch + validateItem: ${CASES} mutated request bodies`, { timeout: 120_000 }, async (t) => {
      assertReport(t, await fuzzInWorker('batch'))
    })

    test(`decodeResponse: ${CASES} mutated response bodies`, { timeout: 120_000 }, async (t) => {
      assertReport(t, await fuzzInWorker('response'))
    })

    test(`fast-check, structure-aware CBOR (every tag, indefinite lengths, deep nesting): ${STRUCT_RUNS} inputs per decoder, each under ${STRUCT_BOUND_MS} ms`, { timeout: 120_000 }, (t) => {
      const isErr = (err: unknown): boolean => err instanceof DecodeError || err instanceof ValidationError
      const decoders: Record<CborTarget, (b: Buffer) => unknown> = {
        reading: (b) => decodeReading(b, 64 * 1024),
        batch: (b) => { const r = decodeBatch(b, { maxItems: MAX_ITEMS }); for (const it of r.items) { try { validateItem(it) } catch (err) { if (!(err instanceof ValidationError)) throw err } } return r },
        batchV2: (b) => decodeBatchV2(b, { maxItems: MAX_ITEMS }),
        response: (b) => decodeResponse(b),
        responseV2: (b) => decodeResponseV2(b),
        receipt: (b) => decodeReceipt(b),
        // the dead-letter tools: decode for display (a few tags allowed) and render; never throws
        view: (b) => JSON.stringify(jsonSafe(decodeForView(b, 'payload')))
      }
      const time = (f: () => void): number => { const t0 = performance.now(); f(); return performance.now() - t0 }
      const t0 = performance.now()
      let slowest = { ms: 0, target: '', hex: '' }
      let tagged = 0
      for (const [target, decode] of Object.entries(decoders) as [CborTarget, (b: Buffer) => unknown][]) {
        const call = (b: Buffer): void => { try { decode(b) } catch (err) { if (!isErr(err) || target === 'view') throw err } }
        // shown in a failure report by length and first bytes, not as 60 KiB of numbers
        const items = fc.oneof({ arbitrary: cborItem, weight: 4 }, { arbitrary: deepItem, weight: 1 })
          .map((b) => ({ b, [fc.toStringMethod]: () => `${b.length} bytes 0x${b.subarray(0, 24).toString('hex')}...` }))
        fc.assert(fc.property(items, fc.nat(), ({ b: item }, where) => {
          const input = placed(target, item, where)
          if (input.includes(0xc2) || input.includes(0xd8)) tagged++
          let ms = time(() => call(input))
          if (ms > STRUCT_BOUND_MS) ms = Math.min(ms, time(() => call(input)), time(() => call(input)))
          if (ms > slowest.ms) slowest = { ms, target, hex: input.subarray(0, 40).toString('hex') }
          assert.ok(ms < STRUCT_BOUND_MS, `${target}: ${input.length}-byte input took ${ms.toFixed(1)} ms (bound ${STRUCT_BOUND_MS}): 0x${input.subarray(0, 40).toString('hex')}`)
        }), { seed: SEED | 0, numRuns: STRUCT_RUNS, includeErrorInReport: true })
      }
      const total = performance.now() - t0
      t.diagnostic(`structure-aware: 7 x ${STRUCT_RUNS} inputs in ${Math.round(total)} ms (seed ${SEED | 0}); slowest ${slowest.ms.toFixed(1)} ms (${slowest.target}, 0x${slowest.hex}...)`)
      assert.ok(tagged > STRUCT_RUNS, 'the generator must produce tags')
    })

    test('fast-check: arbitrary values and bytes through every decoder', { timeout: 120_000 }, (t) => {
      const seed = SEED | 0
      const runs = Math.max(1, Math.floor(CASES / 20))
      const anyValue = fc.anything({ maxDepth: 4, withBigInt: false, withMap: false, withSet: false, withTypedArray: true, withNullPrototype: true, withObjectString: false })
      const reading = fc.record({
        seq: fc.oneof(fc.nat(), fc.double(), fc.constant(2 ** 53), anyValue),
        boot: fc.oneof(fc.nat(), fc.string({ maxLength: 80, unit: 'binary' }), anyValue),
        ts: fc.oneof(fc.nat(), fc.double(), anyValue),
        values: fc.oneof(fc.dictionary(fc.string({ maxLength: 70 }), fc.oneof(fc.double(), fc.boolean(), fc.string({ maxLength: 300, unit: 'binary' }), anyValue), { maxKeys: 70 }), anyValue)
      }, { requiredKeys: [] })
      const checkRead = (payload: Uint8Array): void => {
        try {
          const bad = checkReading(decodeReading(payload, MAX_PAYLOAD))
          assert.equal(bad, null)
        } catch (err) { if (!isProtocolError(err)) throw err }
      }
      const t0 = performance.now()
      fc.assert(fc.property(reading, (o) => {
        let cbor: Buffer
        try { cbor = encodeCbor(o) } catch { return } // values cbor-x itself cannot write
        checkRead(cbor)
        const json = JSON.stringify(o)
        if (json !== undefined) checkRead(Buffer.from(json))
      }), { seed, numRuns: runs })
      fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        checkRead(bytes)
        for (const f of [() => decodeBatch(bytes, { maxItems: MAX_ITEMS }), () => decodeResponse(bytes)]) {
          try { f() } catch (err) { if (!isProtocolError(err)) throw err }
        }
      }), { seed, numRuns: runs })
      t.diagnostic(`fast-check: 2 x ${runs} runs in ${Math.round(performance.now() - t0)} ms (seed ${seed})`)
    })
  })
}
