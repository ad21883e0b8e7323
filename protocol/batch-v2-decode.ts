/**
 * The decoder of upstream protocol v2 (layout: batch-v2.ts, docs/protocol-v2.md), for
 * untrusted bodies: every index, count and running sum is checked; a structural error is a
 * whole-batch ValidationError naming the field.
 */
import { decodeUntrusted } from './cbor.ts'
import { DecodeError, ValidationError } from './errors.ts'
import { describe, envelopeText, uintTuples, type EvictedRange, type Floor, type RawBatchRequest } from './batch.ts'
import { decimalValue, MAX_MANTISSA, MAX_SCALE } from './decimal.ts'
import { PROTOCOL_V2 } from './batch-v2-encode.ts'
import { READING_LIMITS, type Boot, type Values } from './reading.ts'

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
