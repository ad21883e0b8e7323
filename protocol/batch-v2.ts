/**
 * Upstream protocol v2 (docs/protocol-v2.md): the same batch as v1, columnar. Still one
 * standard CBOR map that any RFC 8949 decoder reads; lossless: decoding gives back exactly
 * the v1 items `[p, s, device, seq, boot, ts, rx, values]` (floats bit for bit, -0 kept,
 * value names in their original order).
 *
 *   v: 2, gateway, epoch, batch, floors, evicted?   as in v1
 *   n        number of items
 *   p, s     runs, flat: [p, count, ...] and [firstS, count, ...] (each run s, s+1, ...)
 *   dev      device ids, first-appearance order;  di: device index per item
 *   boot     per device, its boot at its first item;  bootAt: flat [item, boot, ...] changes
 *   seq      per item: null, or seq minus the previous seq of the same device in this batch;
 *            a device's first seq minus the first seq of the device before it (0 at first)
 *   rx       per item: rx minus the previous rx (0 at first)
 *   ts       per item: null, or (ts - rx) minus the previous (ts - rx) of the same device in
 *            this batch (for its first, of the device before it; 0 at first): a device
 *            clock's offset from the gateway's barely moves;
 *   tsRx     instead of ts when such a difference would leave the safe integer range
 *            (|x| >= 2^53): per item null or ts - rx
 *   names    value names;  shapes: [[name index, ...], ...] the distinct name lists, in map order
 *   devShape per device, the shape of its first item;  shapeAt: flat [item, shape, ...] changes
 *   cols     one per name, over the items that carry it, in item order:
 *              [0, bytes]          booleans, bit i (LSB first) of byte i >> 3
 *              [1, k, d, ...]      numbers m / 10^k; d = m minus the previous m of the same
 *                                  device in this column (for its first, the first m of
 *                                  the device before it; 0 at first); a value the scale
 *                                  cannot hold (-0, 1/3...) is written [x] with x as in kind 2
 *                                  and leaves the device's previous m as it was
 *              [2, x, ...]         anything: integer, float16/32/64 (shortest exact), text,
 *                                  boolean, or [k, m] for m / 10^k
 *
 * m / 10^k is the float64 nearest to the decimal fraction: m and 10^k (k <= 22) are exact
 * doubles and IEEE division rounds correctly, so every language gets the same bits. The
 * encoder uses a column's scale k only when every value round-trips through it.
 *
 * The response is `{ v: 2, batch, r: [p, s, count, code, ...], why: [p, s, reason, ...] }`:
 * runs of consecutive seqs with one code, and the reasons of rejected items.
 */
import { CborWriter, float16Bits } from './cbor-writer.ts'
import { decodeUntrusted } from './cbor.ts'
import { AckCode, normalizeCode } from './codes.ts'
import { DecodeError, ValidationError } from './errors.ts'
import { describe, envelopeText, uintTuples, type BatchEnvelope, type BatchItem, type BatchResponse, type EvictedRange, type Floor, type ItemResult, type RawBatchRequest } from './batch.ts'
import { READING_LIMITS, type Boot, type Values } from './reading.ts'

export const PROTOCOL_V2 = 2 as const
/** Response headers by which an ingest names the protocol versions and body encodings it takes. */
export const PROTOCOLS_HEADER = 'ingest-protocols'
export const ENCODINGS_HEADER = 'ingest-encodings'
const MAX_SCALE = 15
const MAX_MANTISSA = 2 ** 52
const POW10 = Array.from({ length: MAX_SCALE + 1 }, (_, k) => 10 ** k)

/** m / 10^k, the float64 a decimal fraction denotes. */
export function decimalValue (m: number, k: number): number {
  return k === 0 ? m : m / POW10[k]!
}

/** The smallest k with v === m / 10^k for an integer |m| < 2^52, or -1. */
export function decimalScale (v: number): number {
  if (!Number.isFinite(v) || Object.is(v, -0)) return -1
  for (let k = 0; k <= MAX_SCALE; k++) {
    const m = Math.round(v * POW10[k]!)
    if (Math.abs(m) >= MAX_MANTISSA) return -1
    if (decimalValue(m, k) === v) return k
  }
  return -1
}

type Env = Omit<BatchEnvelope, 'v'>

function runs (w: CborWriter, values: readonly number[], consecutive: boolean): void {
  const flat: number[] = []
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!
    const last = flat.length - 2
    if (last >= 0 && v === (consecutive ? flat[last]! + flat[last + 1]! : flat[last]!)) flat[last + 1]!++
    else flat.push(v, 1)
  }
  w.array(flat.length)
  for (const x of flat) w.int(x)
}

function boot (w: CborWriter, b: Boot | null): void {
  if (b === null) w.null()
  else if (typeof b === 'number') w.int(b)
  else w.text(b)
}

function intLen (n: number): number {
  const a = n < 0 ? -1 - n : n
  return a < 24 ? 1 : a < 0x100 ? 2 : a < 0x10000 ? 3 : a <= 0xffffffff ? 5 : 9
}

/** One value of a raw column in its shortest exact form. */
function rawValue (w: CborWriter, v: number | boolean | string): void {
  if (typeof v === 'boolean') { w.bool(v); return }
  if (typeof v === 'string') { w.text(v); return }
  if (Number.isSafeInteger(v) && !Object.is(v, -0)) { w.int(v); return }
  const floatLen = float16Bits(v) >= 0 ? 3 : Math.fround(v) === v ? 5 : 9
  const k = decimalScale(v)
  if (k > 0) {
    const m = Math.round(v * POW10[k]!)
    if (2 + intLen(m) < floatLen) { w.array(2).int(k).int(m); return }
  }
  w.float(v)
}

function sameNames (a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

type Column = { vals: (number | boolean | string)[], devs: number[] }

function column (w: CborWriter, c: Column): void {
  const { vals, devs } = c
  if (vals.every((v) => typeof v === 'boolean')) {
    const bits = new Uint8Array((vals.length + 7) >> 3)
    for (let i = 0; i < vals.length; i++) if (vals[i]) bits[i >> 3]! |= 1 << (i & 7)
    w.array(2).int(0).bytes(bits)
    return
  }
  if (vals.every((v) => typeof v === 'number')) {
    // one scale for the column (the largest any value needs), then the mantissas at that
    // scale; the few values it cannot hold exactly go as escapes
    let k = 0
    let scale = 1
    for (const v of vals as number[]) {
      if (Math.round(v * scale) / scale === v) continue // fits the scale so far (-0 is sorted out below)
      const kv = decimalScale(v)
      if (kv > k) { k = kv; scale = POW10[k]! }
    }
    let escapes = 0
    const ms: (number | null)[] = []
    for (const v of vals as number[]) {
      const m = Math.round(v * scale)
      const ok = !Object.is(v, -0) && Math.abs(m) < MAX_MANTISSA && Object.is(decimalValue(m, k), v)
      ms.push(ok ? m : null)
      if (!ok) escapes++
    }
    if (escapes * 8 <= vals.length) {
      w.array(2 + ms.length).int(1).int(k)
      const last = new Map<number, number>()
      let first = 0
      for (let i = 0; i < ms.length; i++) {
        const m = ms[i]
        if (m === null) { w.array(1); rawValue(w, vals[i] as number); continue }
        const d = devs[i]!
        const prev = last.get(d)
        w.int(m - (prev ?? first))
        if (prev === undefined) first = m
        last.set(d, m)
      }
      return
    }
  }
  w.array(1 + vals.length).int(2)
  for (const v of vals) rawValue(w, v)
}

/** Encodes a batch as protocol v2. Items must be valid v1 items (the gateway's own). */
export function encodeBatchV2 (env: Env, items: readonly BatchItem[]): Buffer {
  const n = items.length
  const devIndex = new Map<string, number>()
  const devBoot: (Boot | null)[] = []
  const curBoot: (Boot | null)[] = []
  const lastSeq: (number | undefined)[] = []
  const di: number[] = new Array(n)
  const bootAt: (number | Boot | null)[] = []
  const nameIndex = new Map<string, number>()
  const cols: Column[] = []
  const shapeIndex = new Map<string, number>()
  const shapes: number[][] = []
  const shapeNames: string[][] = []
  const devShape: number[] = []
  const curShape: number[] = []
  const shapeAt: number[] = []
  const w = new CborWriter(64 + n * 24)
  const evicted = env.evicted && env.evicted.length > 0 ? env.evicted : null
  w.map(evicted ? 21 : 20)
  w.text('v').int(PROTOCOL_V2)
  w.text('gateway').text(env.gateway)
  w.text('epoch').text(env.epoch)
  w.text('batch').text(env.batch)
  w.text('floors').array(env.floors.length)
  for (const [p, s] of env.floors) w.array(2).int(p).int(s)
  if (evicted) {
    w.text('evicted').array(evicted.length)
    for (const [p, a, b] of evicted) w.array(3).int(p).int(a).int(b)
  }
  w.text('n').int(n)
  w.text('p'); runs(w, items.map((it) => it[0]), false)
  w.text('s'); runs(w, items.map((it) => it[1]), true)
  for (let i = 0; i < n; i++) {
    const it = items[i]!
    let d = devIndex.get(it[2])
    if (d === undefined) {
      d = devIndex.size
      devIndex.set(it[2], d)
      devBoot.push(it[4])
      curBoot.push(it[4])
      lastSeq.push(undefined)
    } else if (curBoot[d] !== it[4]) {
      curBoot[d] = it[4]
      bootAt.push(i, it[4])
    }
    di[i] = d
    const values = it[7]
    const names = Object.keys(values)
    // most readings have the names their device's last one had: compare before building a key
    let sh = d < curShape.length ? curShape[d]! : -1
    if (sh < 0 || !sameNames(shapeNames[sh]!, names)) {
      const ids: number[] = []
      for (const name of names) {
        let c = nameIndex.get(name)
        if (c === undefined) { c = nameIndex.size; nameIndex.set(name, c); cols.push({ vals: [], devs: [] }) }
        ids.push(c)
      }
      const key = ids.join(',')
      sh = shapeIndex.get(key) ?? -1
      if (sh < 0) { sh = shapes.length; shapeIndex.set(key, sh); shapes.push(ids); shapeNames.push(names) }
    }
    const ids = shapes[sh]!
    for (let j = 0; j < ids.length; j++) {
      const col = cols[ids[j]!]!
      col.vals.push(values[names[j]!]!)
      col.devs.push(d)
    }
    if (curShape.length <= d) { devShape.push(sh); curShape.push(sh) } else if (curShape[d] !== sh) { curShape[d] = sh; shapeAt.push(i, sh) }
  }
  w.text('dev').array(devIndex.size)
  for (const id of devIndex.keys()) w.text(id)
  w.text('di').array(n)
  for (const d of di) w.int(d)
  w.text('boot').array(devBoot.length)
  for (const b of devBoot) boot(w, b)
  w.text('bootAt').array(bootAt.length)
  for (let i = 0; i < bootAt.length; i += 2) { w.int(bootAt[i] as number); boot(w, bootAt[i + 1] as Boot | null) }
  w.text('seq').array(n)
  let firstSeq = 0
  for (let i = 0; i < n; i++) {
    const seq = items[i]![3]
    if (seq === null) { w.null(); continue }
    const prev = lastSeq[di[i]!]
    w.int(seq - (prev ?? firstSeq))
    if (prev === undefined) firstSeq = seq
    lastSeq[di[i]!] = seq
  }
  w.text('rx').array(n)
  let prevRx = 0
  for (const it of items) { w.int(it[6] - prevRx); prevRx = it[6] }
  const lastSkew = new Array<number | undefined>(devIndex.size).fill(undefined)
  const tsCol: (number | null)[] = new Array(n)
  let safe = true
  let firstSkew = 0
  for (let i = 0; i < n; i++) {
    const it = items[i]!
    if (it[5] === null) { tsCol[i] = null; continue }
    const skew = it[5] - it[6]
    const prev = lastSkew[di[i]!]
    tsCol[i] = skew - (prev ?? firstSkew)
    if (prev === undefined) firstSkew = skew
    if (!Number.isSafeInteger(tsCol[i])) safe = false
    lastSkew[di[i]!] = skew
  }
  w.text(safe ? 'ts' : 'tsRx').array(n)
  for (let i = 0; i < n; i++) {
    const ts = items[i]![5]
    if (ts === null) w.null()
    else w.int(safe ? tsCol[i]! : ts - items[i]![6])
  }
  w.text('names').array(nameIndex.size)
  for (const name of nameIndex.keys()) w.text(name)
  w.text('shapes').array(shapes.length)
  for (const ids of shapes) { w.array(ids.length); for (const c of ids) w.int(c) }
  w.text('devShape').array(devShape.length)
  for (const sh of devShape) w.int(sh)
  w.text('shapeAt').array(shapeAt.length)
  for (const x of shapeAt) w.int(x)
  w.text('cols').array(cols.length)
  for (const c of cols) column(w, c)
  return w.finish()
}

// ---------------------------------------------------------------- decoding (untrusted)

const bad = (field: string, msg: string): never => { throw new ValidationError(field, msg) }

function isInt (v: unknown): v is number { return typeof v === 'number' && Number.isSafeInteger(v) }
function isUint (v: unknown): v is number { return isInt(v) && v >= 0 }

function array (obj: Record<string, unknown>, k: string, len?: number): unknown[] {
  const v = obj[k]
  if (!Array.isArray(v)) return bad(k, 'must be an array')
  if (len !== undefined && v.length !== len) bad(k, `must have ${len} elements, has ${v.length}`)
  return v
}

function expandRuns (obj: Record<string, unknown>, k: string, n: number, consecutive: boolean, max = Infinity): number[] {
  const flat = array(obj, k)
  if (flat.length % 2 !== 0) bad(k, 'must hold [value, count] pairs')
  const out: number[] = []
  for (let i = 0; i < flat.length; i += 2) {
    const v = flat[i]
    const c = flat[i + 1]
    if (!isUint(v) || v >= max) bad(`${k}[${i}]`, `must be an unsigned integer${max < Infinity ? ` below ${max}` : ''}`)
    if (!isUint(c) || c === 0 || out.length + (c as number) > n) bad(`${k}[${i + 1}]`, `run counts must be positive and add up to n = ${n}`)
    for (let j = 0; j < (c as number); j++) out.push(consecutive ? (v as number) + j : v as number)
  }
  if (out.length !== n) bad(k, `runs cover ${out.length} items, n is ${n}`)
  return out
}

function bootValue (v: unknown, field: string): Boot | null {
  if (v === null || isUint(v) || (typeof v === 'string' && Buffer.byteLength(v) <= READING_LIMITS.maxBootBytes)) return v as Boot | null
  return bad(field, `must be null, an unsigned integer or text of at most ${READING_LIMITS.maxBootBytes} bytes`)
}

/** A running sum that must stay a safe integer. */
function add (a: number, d: unknown, field: string): number {
  if (!isInt(d)) bad(field, 'must be an integer')
  const v = a + (d as number)
  if (!Number.isSafeInteger(v)) bad(field, 'running value leaves the safe integer range')
  return v
}

/** A number of a raw column or an escape: a CBOR number or [k, m] for m / 10^k. */
function rawDecimal (v: unknown): number | undefined {
  if (typeof v === 'number') return v
  if (Array.isArray(v) && v.length === 2 && isUint(v[0]) && v[0] <= MAX_SCALE && isInt(v[1]) && Math.abs(v[1]) < MAX_MANTISSA) return decimalValue(v[1], v[0])
  return undefined
}

type ColReader = (dev: number, at: string) => number | boolean | string

function columnReader (c: unknown, field: string, count: number): ColReader {
  if (!Array.isArray(c) || c.length < 1) return bad(field, 'must be [kind, ...]')
  let i = 0
  if (c[0] === 0) {
    const bits = c[1]
    if (c.length !== 2 || !(bits instanceof Uint8Array) || bits.length !== (count + 7) >> 3) bad(field, `boolean column must be [0, ${(count + 7) >> 3} bytes]`)
    return () => { const b = ((bits as Uint8Array)[i >> 3]! >> (i & 7)) & 1; i++; return b === 1 }
  }
  if (c[0] === 1) {
    const k = c[1]
    if (!isUint(k) || k > MAX_SCALE) bad(field, `scale must be 0..${MAX_SCALE}`)
    if (c.length !== 2 + count) bad(field, `must hold ${count} values, holds ${c.length - 2}`)
    const last = new Map<number, number>()
    let first = 0
    return (dev, at) => {
      const el = c[2 + i++] as unknown
      if (Array.isArray(el)) {
        const v = el.length === 1 ? rawDecimal(el[0]) : undefined
        return typeof v === 'number' ? v : bad(at, 'an escaped value must be [number] or [[k, m]]')
      }
      const prev = last.get(dev)
      const m = add(prev ?? first, el, at)
      if (prev === undefined) first = m
      if (Math.abs(m) >= MAX_MANTISSA) bad(at, 'mantissa out of range')
      last.set(dev, m)
      return decimalValue(m, k as number)
    }
  }
  if (c[0] === 2) {
    if (c.length !== 1 + count) bad(field, `must hold ${count} values, holds ${c.length - 1}`)
    return (_dev, at) => {
      const v = c[1 + i++] as unknown
      if (typeof v === 'boolean' || typeof v === 'string') return v
      return rawDecimal(v) ?? bad(at, 'must be a number, boolean, text or [k, m]')
    }
  }
  return bad(field, 'unknown column kind (0 booleans, 1 decimal numbers, 2 raw values)')
}

/**
 * Decodes a v2 request body into the v1 shape: envelope checked, items expanded into
 * `[p, s, device, seq, boot, ts, rx, values]` arrays left for `validateItem`. A structural
 * error anywhere is a whole-batch error (columns cannot be answered item by item).
 */
export function decodeBatchV2 (body: Uint8Array, opts: { maxItems: number }): RawBatchRequest {
  const raw = decodeUntrusted(body, { maxDepth: 5, maxItems: opts.maxItems * (8 + READING_LIMITS.maxValues) + 4096 })
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || raw instanceof Uint8Array) throw new DecodeError('batch must be a CBOR map')
  const obj = raw as Record<string, unknown>
  if (obj.v !== PROTOCOL_V2) bad('v', `this is the v2 endpoint; the body says v ${describe(obj.v)}`)
  const gateway = envelopeText(obj, 'gateway', 64)
  const epoch = envelopeText(obj, 'epoch', 64)
  const batch = envelopeText(obj, 'batch', 128)
  const floors = uintTuples(obj.floors ?? [], 'floors', 2) as Floor[]
  const evicted = obj.evicted === undefined ? undefined : uintTuples(obj.evicted, 'evicted', 3) as EvictedRange[]
  for (const [i, [, a, b]] of (evicted ?? []).entries()) if (a > b) bad(`evicted[${i}]`, 'fromSeq above toSeq')
  const n = obj.n
  if (!isUint(n)) return bad('n', 'must be an unsigned integer')
  if (n > opts.maxItems) bad('items', `${n} items exceeds the limit of ${opts.maxItems}`)
  const ps = expandRuns(obj, 'p', n, false, 0x10000)
  const ss = expandRuns(obj, 's', n, true)
  const dev = array(obj, 'dev')
  if (dev.length > n) bad('dev', 'more devices than items')
  for (const [i, d] of dev.entries()) if (typeof d !== 'string') bad(`dev[${i}]`, 'must be text')
  const di = array(obj, 'di', n)
  const boots = array(obj, 'boot', dev.length).map((b, i) => bootValue(b, `boot[${i}]`))
  const bootAt = array(obj, 'bootAt')
  if (bootAt.length % 2 !== 0) bad('bootAt', 'must hold [item, boot] pairs')
  const seqs = array(obj, 'seq', n)
  const tsDelta = obj.tsRx === undefined
  const tss = array(obj, tsDelta ? 'ts' : 'tsRx', n)
  const rxs = array(obj, 'rx', n)
  const names = array(obj, 'names')
  if (names.length > n * READING_LIMITS.maxValues) bad('names', 'more names than values')
  for (const [i, name] of names.entries()) if (typeof name !== 'string') bad(`names[${i}]`, 'must be text')
  const shapes = array(obj, 'shapes').map((s, i) => {
    if (!Array.isArray(s) || s.length > READING_LIMITS.maxValues || !s.every((c) => isUint(c) && c < names.length) || new Set(s).size !== s.length) {
      return bad(`shapes[${i}]`, `must be distinct name indexes, at most ${READING_LIMITS.maxValues}`)
    }
    return s as number[]
  })
  const devShape = array(obj, 'devShape', dev.length)
  for (const [i, sh] of devShape.entries()) if (!isUint(sh) || sh >= shapes.length) bad(`devShape[${i}]`, `must be a shape index below ${shapes.length}`)
  const shapeAt = array(obj, 'shapeAt')
  if (shapeAt.length % 2 !== 0) bad('shapeAt', 'must hold [item, shape] pairs')
  const shapeOf: number[] = new Array(n)
  const curShape = devShape.slice() as number[]
  for (let i = 0, next = 0; i < n; i++) {
    const d = di[i]
    if (!isUint(d) || d >= dev.length) bad(`di[${i}]`, `must be a device index below ${dev.length}`)
    if (next < shapeAt.length && shapeAt[next] === i) {
      const sh = shapeAt[next + 1]
      if (!isUint(sh) || sh >= shapes.length) bad(`shapeAt[${next + 1}]`, `must be a shape index below ${shapes.length}`)
      curShape[d as number] = sh as number
      next += 2
    }
    shapeOf[i] = curShape[d as number]!
    if (i === n - 1 && next !== shapeAt.length) bad('shapeAt', 'item indexes must be increasing and below n')
  }
  if (n === 0 && shapeAt.length > 0) bad('shapeAt', 'item indexes must be increasing and below n')
  const counts = new Array<number>(names.length).fill(0)
  for (const sh of shapeOf) for (const c of shapes[sh]!) counts[c]!++
  const colsRaw = array(obj, 'cols', names.length)
  const cols = colsRaw.map((c, i) => columnReader(c, `cols[${i}]`, counts[i]!))

  const items: unknown[] = new Array(n)
  const cur = boots.slice()
  const lastSeq = new Array<number | undefined>(dev.length).fill(undefined)
  const lastSkew = new Array<number | undefined>(dev.length).fill(undefined)
  let firstSeq = 0
  let firstSkew = 0
  let nextBootAt = 0
  let prevRx = 0
  for (let i = 0; i < n; i++) {
    const dv = di[i] as number
    if (nextBootAt < bootAt.length && bootAt[nextBootAt] === i) {
      cur[dv] = bootValue(bootAt[nextBootAt + 1], `bootAt[${nextBootAt + 1}]`)
      nextBootAt += 2
    }
    let seq: number | null = null
    if (seqs[i] !== null) {
      const prev = lastSeq[dv]
      seq = add(prev ?? firstSeq, seqs[i], `seq[${i}]`)
      if (prev === undefined) firstSeq = seq
      lastSeq[dv] = seq
    }
    prevRx = add(prevRx, rxs[i], `rx[${i}]`)
    let ts: number | null = null
    if (tss[i] !== null) {
      const prev = lastSkew[dv]
      const skew = add(tsDelta ? prev ?? firstSkew : 0, tss[i], `ts[${i}]`)
      if (prev === undefined) firstSkew = skew
      lastSkew[dv] = skew
      ts = add(prevRx, skew, `ts[${i}]`)
    }
    const values: Values = {}
    for (const c of shapes[shapeOf[i]!]!) {
      const name = names[c] as string
      const v = cols[c]!(dv, `cols[${c}] at item ${i}`)
      // an own "__proto__" property, so validation sees (and refuses) it instead of it vanishing
      if (name === '__proto__') Object.defineProperty(values, name, { value: v, enumerable: true, writable: true, configurable: true })
      else values[name] = v
    }
    items[i] = [ps[i], ss[i], dev[dv], seq, cur[dv], ts, prevRx, values]
  }
  if (nextBootAt !== bootAt.length) bad('bootAt', 'item indexes must be increasing and below n')
  return { v: 1, gateway, epoch, batch, items, floors, ...(evicted ? { evicted } : {}) }
}

/** The v2 response: runs of consecutive seqs with one code, reasons apart. */
export function encodeResponseV2 (res: Omit<BatchResponse, 'v'>): Buffer {
  const r: number[] = []
  const why: ItemResult[] = []
  for (const x of res.results) {
    const last = r.length - 4
    if (last >= 0 && r[last] === x[0] && r[last + 3] === x[2] && r[last + 1]! + r[last + 2]! === x[1]) r[last + 2]!++
    else r.push(x[0], x[1], 1, x[2])
    if (x[3] !== undefined) why.push(x)
  }
  const w = new CborWriter(64 + r.length * 3)
  w.map(4).text('v').int(PROTOCOL_V2).text('batch').text(res.batch)
  w.text('r').array(r.length)
  for (const x of r) w.int(x)
  w.text('why').array(why.length * 3)
  for (const x of why) w.int(x[0]).int(x[1]).text(x[3]!)
  return w.finish()
}

/** Expands a v2 response into per-item results (malformed runs are skipped: those items count as retry). */
export function decodeResponseV2 (body: Uint8Array): BatchResponse {
  const raw = decodeUntrusted(body, { maxDepth: 3 })
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new DecodeError('response must be a CBOR map')
  const obj = raw as Record<string, unknown>
  if (obj.v !== PROTOCOL_V2) bad('v', `unsupported response version ${describe(obj.v)}`)
  if (!Array.isArray(obj.r)) return bad('r', 'must be an array')
  const reasons = new Map<string, string>()
  const why = Array.isArray(obj.why) ? obj.why : []
  for (let i = 0; i + 2 < why.length; i += 3) if (typeof why[i + 2] === 'string') reasons.set(`${why[i]}:${why[i + 1]}`, why[i + 2] as string)
  const results: ItemResult[] = []
  const r = obj.r
  for (let i = 0; i + 3 < r.length; i += 4) {
    const [p, s, count, code] = [r[i], r[i + 1], r[i + 2], r[i + 3]]
    if (!isUint(p) || !isUint(s) || !isUint(count) || count > 1_000_000) continue
    const c: AckCode = normalizeCode(code)
    for (let j = 0; j < count; j++) {
      const reason = reasons.get(`${p}:${s + j}`)
      results.push(reason === undefined ? [p, s + j, c] : [p, s + j, c, reason])
    }
  }
  return { v: 1, batch: typeof obj.batch === 'string' ? obj.batch : '', results }
}
