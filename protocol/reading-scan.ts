/**
 * The intake's one-pass reading decoder: a CBOR reading is checked straight from
 * its bytes, with no decoded object. `scanReading` reads the top-level map's seq, boot and
 * ts, validates every entry of `values` where it lies in the payload and returns the span;
 * item-encoder.ts `encodeItemSpan` later writes that span into the stored item, entry by
 * entry, as the same bytes `encodeItemFast` writes for the decoded object.
 *
 * It takes only the common shape: a definite-length map in the first byte, the four known
 * fields once each, values of unsigned/negative integers within 2^53, finite floats
 * (half, single, double), false/true, and ASCII text; value names that match the name rule
 * and could not reorder a JavaScript object (no all-digit names) or be renamed by cbor-x
 * (`__proto__`, `__proto_`), each once. Anything else (JSON, leading whitespace, tags,
 * indefinite lengths, nulls in values, non-ASCII text, trailing bytes, any error) returns
 * null, and the caller runs `decodeReading`, which accepts what it accepts and words every
 * refusal. So this file decides nothing on its own: for any payload it either agrees with
 * `decodeReading` or steps aside (test/unit/reading-scan.test.ts compares the two, item
 * bytes included, on generated and mutated payloads).
 */
import type { Boot, Reading } from './reading.ts'
import { READING_LIMITS } from './reading.ts'

const NO_VALUES = Object.freeze({}) as Reading['values']

/** Where a validated values map lies in its payload. */
export type ValuesSpan = { buf: Uint8Array, start: number, end: number, count: number }

/**
 * A reading whose values are still the payload's bytes (`values` is empty; `buf`, `start`,
 * `end`, `count` say where they are). One object per reading, as the decoder's Reading is:
 * it is its own span.
 */
export class ScannedReading implements Reading, ValuesSpan {
  readonly values = NO_VALUES
  constructor (
    public seq: number | null,
    public boot: Boot | null,
    public ts: number | null,
    readonly buf: Uint8Array,
    readonly start: number,
    readonly end: number,
    readonly count: number
  ) {}
}

const TWO32 = 0x100000000

/** Name bytes allowed by VALUE_NAME_RE ([A-Za-z0-9_.:-]). */
const NAME_BYTE = new Uint8Array(256)
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-') NAME_BYTE[c.charCodeAt(0)] = 1

/** The argument of the head read last by `head` (a length, an integer, a float's bits' position). */
let arg = 0
/** Name offsets of the map being scanned, for the duplicate check (start, length pairs). */
const names = new Int32Array(2 * READING_LIMITS.maxValues)

/**
 * Reads the head at b[i] (i < end): sets `arg` (`headArg()`), returns the index after it, or
 * -1 when the head is not one this scanner takes (indefinite, reserved, 64-bit above 2^53,
 * truncated). item-encoder.ts reads the validated span through it too.
 */
export function head (b: Uint8Array, i: number, end: number): number {
  const ai = b[i]! & 31
  if (ai < 24) { arg = ai; return i + 1 }
  if (ai === 24) { if (i + 2 > end) return -1; arg = b[i + 1]!; return i + 2 }
  if (ai === 25) { if (i + 3 > end) return -1; arg = (b[i + 1]! << 8) | b[i + 2]!; return i + 3 }
  if (ai === 26) { if (i + 5 > end) return -1; arg = u32(b, i + 1); return i + 5 }
  if (ai === 27) {
    if (i + 9 > end) return -1
    const hi = u32(b, i + 1)
    if (hi > 0x1fffff) return -1
    arg = hi * TWO32 + u32(b, i + 5)
    return i + 9
  }
  return -1
}

/** The argument of the head `head` read last. */
export function headArg (): number { return arg }

function u32 (b: Uint8Array, i: number): number {
  return ((b[i]! << 24) >>> 0) + ((b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!)
}

/** True when b[s, s+n) are all ASCII. */
function ascii (b: Uint8Array, s: number, n: number): boolean {
  for (let k = s; k < s + n; k++) if (b[k]! >= 0x80) return false
  return true
}

function same (b: Uint8Array, s1: number, s2: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (b[s1 + k] !== b[s2 + k]) return false
  return true
}

/** 8 bytes to read a float through without a DataView per value */
const scratch = new DataView(new ArrayBuffer(8))

/** The float of major type 7 at b[i] (ai 25, 26, 27; bounds checked by the caller). */
export function floatAt (b: Uint8Array, i: number): number {
  const ai = b[i]! & 31
  if (ai === 27) {
    for (let k = 0; k < 8; k++) scratch.setUint8(k, b[i + 1 + k]!)
    return scratch.getFloat64(0)
  }
  if (ai === 26) {
    for (let k = 0; k < 4; k++) scratch.setUint8(k, b[i + 1 + k]!)
    return scratch.getFloat32(0)
  }
  const h = (b[i + 1]! << 8) | b[i + 2]!
  const e = (h >> 10) & 0x1f
  const m = h & 0x3ff
  const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m === 0 ? Infinity : NaN) : (m + 1024) * 2 ** (e - 25)
  return h & 0x8000 ? -v : v
}

/** The index after one values entry's value at b[i], or -1 when it is not one this scanner takes. */
function value (b: Uint8Array, i: number, end: number): number {
  const ib = b[i]!
  const major = ib >> 5
  if (major === 0 || major === 1) return head(b, i, end)
  if (major === 3) {
    const j = head(b, i, end)
    if (j < 0 || arg > READING_LIMITS.maxTextBytes || j + arg > end || !ascii(b, j, arg)) return -1
    return j + arg
  }
  if (ib === 0xf4 || ib === 0xf5) return i + 1
  const n = ib === 0xf9 ? 3 : ib === 0xfa ? 5 : ib === 0xfb ? 9 : 0
  if (n === 0 || i + n > end || !Number.isFinite(floatAt(b, i))) return -1
  return i + n
}

/** Scans the values map at b[i]: returns the index after it and sets `arg` to its entry count, or -1. */
function values (b: Uint8Array, i: number, end: number): number {
  if (b[i]! >> 5 !== 5) return -1
  i = head(b, i, end)
  const count = arg
  if (i < 0 || count === 0 || count > READING_LIMITS.maxValues) return -1
  for (let e = 0; e < count; e++) {
    if (i >= end || b[i]! >> 5 !== 3) return -1
    i = head(b, i, end)
    const n = arg
    if (i < 0 || n === 0 || n > 64 || i + n > end) return -1
    let digits = true
    for (let k = i; k < i + n; k++) {
      const c = b[k]!
      if (NAME_BYTE[c] === 0) return -1
      if (c < 0x30 || c > 0x39) digits = false
    }
    // an all-digit name moves to the front of a JavaScript object; __proto__ is renamed by cbor-x
    if (digits || (b[i] === 0x5f && b[i + 1] === 0x5f && (n === 8 || n === 9) && sameProto(b, i, n))) return -1
    for (let d = 0; d < e; d++) if (names[2 * d + 1] === n && same(b, names[2 * d]!, i, n)) return -1
    names[2 * e] = i
    names[2 * e + 1] = n
    i += n
    if (i >= end) return -1
    i = value(b, i, end)
    if (i < 0) return -1
  }
  arg = count
  return i
}

const PROTO = Buffer.from('__proto__')
/** b[i, i+n) is "__proto__" or "__proto_" (n is 9 or 8) */
function sameProto (b: Uint8Array, i: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (b[i + k] !== PROTO[k]) return false
  return true
}

const SEQ = 1
const BOOT = 2
const TS = 4
const VALUES = 8

/**
 * The reading in `payload` when it has the common shape (above), with its values as a span
 * of the payload; null when `decodeReading` must decide. Never throws. The caller has
 * checked that the payload is not empty and within its size limit.
 */
export function scanReading (b: Uint8Array): ScannedReading | null {
  const end = b.length
  if (end === 0 || b[0]! >> 5 !== 5) return null
  let i = head(b, 0, end)
  const fields = arg
  if (i < 0 || fields === 0 || fields > 4) return null
  let seen = 0
  let seq: number | null = null
  let boot: Boot | null = null
  let ts: number | null = null
  let vStart = 0
  let vEnd = 0
  let vCount = 0
  for (let f = 0; f < fields; f++) {
    if (i >= end) return null
    if (b[i]! >> 5 !== 3) return null
    i = head(b, i, end)
    const n = arg
    if (i < 0 || i + n > end) return null
    // the keys "seq", "boot", "ts", "values"
    let field = 0
    if (n === 3 && b[i] === 0x73 && b[i + 1] === 0x65 && b[i + 2] === 0x71) field = SEQ
    else if (n === 4 && b[i] === 0x62 && b[i + 1] === 0x6f && b[i + 2] === 0x6f && b[i + 3] === 0x74) field = BOOT
    else if (n === 2 && b[i] === 0x74 && b[i + 1] === 0x73) field = TS
    else if (n === 6 && b[i] === 0x76 && b[i + 1] === 0x61 && b[i + 2] === 0x6c && b[i + 3] === 0x75 && b[i + 4] === 0x65 && b[i + 5] === 0x73) field = VALUES
    if (field === 0 || (seen & field) !== 0) return null
    seen |= field
    i += n
    if (i >= end) return null
    const vb = b[i]!
    if (field === VALUES) {
      vStart = i
      i = values(b, i, end)
      if (i < 0) return null
      vEnd = i
      vCount = arg
    } else if (vb === 0xf6) {
      i++
    } else if (vb >> 5 === 0) {
      i = head(b, i, end)
      if (i < 0) return null
      if (field === SEQ) seq = arg
      else if (field === BOOT) boot = arg
      else ts = arg
    } else if (field === BOOT && vb >> 5 === 3) {
      i = head(b, i, end)
      const n = arg
      if (i < 0 || n > READING_LIMITS.maxBootBytes || i + n > end || !ascii(b, i, n)) return null
      boot = Buffer.from(b.buffer, b.byteOffset + i, n).toString('latin1')
      i += n
    } else {
      return null
    }
  }
  if (i !== end || (seen & VALUES) === 0) return null
  return new ScannedReading(seq, boot, ts, b, vStart, vEnd, vCount)
}
