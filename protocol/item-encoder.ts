/**
 * The item encoder of the intake's hot path: `[p, s, device, seq, boot, ts, rx, values]`
 * written straight into a shared slab, the same bytes cbor-x's wire encoder writes for that
 * array (minimal heads, uint64 above 2^32 for the uint fields, float64 for other numbers;
 * test/unit/item-encoder.test.ts compares the two on random items), at about half its cost
 * (~0.35 against ~0.7 µs per item, `npm run bench:item-encode`): the general encoder pays
 * for setup and type dispatch on every call. One value differs on purpose: `-0` is written
 * as a float64, where cbor-x writes the integer 0 and loses the sign.
 *
 * Returned buffers are views of a 64 KiB slab; a new slab is taken when one is full, so a
 * view stays valid for as long as it is referenced.
 */
import type { Boot, Values } from './reading.ts'
import { floatAt, head as readHead, headArg, type ValuesSpan } from './reading-scan.ts'

const SLAB = 64 * 1024
let slab = Buffer.allocUnsafeSlow(SLAB)
let pos = 0

function room (n: number): void {
  if (pos + n <= slab.length) return
  slab = Buffer.allocUnsafeSlow(Math.max(SLAB, n))
  pos = 0
}

/** Head of major type `m` (0..7, already shifted left by 5) with argument n < 2^32. */
function head (m: number, n: number): void {
  const b = slab
  if (n < 24) {
    b[pos++] = m | n
  } else if (n < 0x100) {
    b[pos++] = m | 24; b[pos++] = n
  } else if (n < 0x10000) {
    b[pos++] = m | 25; b[pos++] = n >> 8; b[pos++] = n & 0xff
  } else {
    b[pos++] = m | 26; b.writeUInt32BE(n, pos); pos += 4
  }
}

/** An unsigned integer below 2^53 as the shortest CBOR uint (uint64 above 2^32). */
function uint (n: number): void {
  if (n <= 0xffffffff) { head(0, n); return }
  const b = slab
  b[pos++] = 0x1b
  b.writeUInt32BE(Math.floor(n / 0x100000000), pos)
  b.writeUInt32BE(n >>> 0, pos + 4)
  pos += 8
}

/**
 * A number in a values map as cbor-x writes it (ints up to 32 bits, else float64), except
 * `-0`: cbor-x writes it as the integer 0 (`-0 >>> 0 === -0`), and CBOR integers have no
 * sign of zero, so it is a float64 here; docs/protocol-v2.md promises every number bit for bit.
 */
function number (v: number): void {
  if (v >>> 0 === v) {
    if (v === 0 && 1 / v < 0) { slab[pos++] = 0xfb; slab.writeDoubleBE(v, pos); pos += 8; return }
    head(0, v)
    return
  }
  if (v >> 0 === v || (v < 0 && v >= -0x100000000 && Math.floor(v) === v)) { head(0x20, -1 - v); return }
  slab[pos++] = 0xfb
  slab.writeDoubleBE(v, pos)
  pos += 8
}

function text (s: string): void {
  const n = s.length
  if (n < 24) {
    // short ASCII (device ids, value names): bytes written in place, no byte-length pass
    const b = slab
    const start = pos + 1
    let i = 0
    for (; i < n; i++) {
      const c = s.charCodeAt(i)
      if (c >= 0x80) break
      b[start + i] = c
    }
    if (i === n) { b[pos] = 0x60 | n; pos = start + n; return }
  }
  const len = Buffer.byteLength(s, 'utf8')
  head(0x60, len)
  pos += slab.write(s, pos, len, 'utf8')
}

/** The number of entries `bound` counted (for-in, not Object.keys: no array per item). */
let entries = 0

/** Upper bound of the encoded size, so the item never straddles two slabs; sets `entries`. */
function bound (device: string, boot: Boot | null, values: Values): number {
  let n = 1 + 3 + 9 * 4 + 2 * 9 + device.length * 3 + 5
  if (typeof boot === 'string') n += boot.length * 3 + 5
  entries = 0
  for (const k in values) {
    const v = values[k]
    n += k.length * 3 + 5 + (typeof v === 'string' ? v.length * 3 + 5 : 9)
    entries++
  }
  return n
}

/** The array head and the seven fields before `values` (room already made). */
function fields (p: number, s: number, device: string, seq: number | null, boot: Boot | null, ts: number | null, rx: number): void {
  slab[pos++] = 0x88
  uint(p)
  uint(s)
  text(device)
  if (seq === null) slab[pos++] = 0xf6
  else uint(seq)
  if (boot === null) slab[pos++] = 0xf6
  else if (typeof boot === 'number') uint(boot)
  else text(boot)
  if (ts === null) slab[pos++] = 0xf6
  else uint(ts)
  uint(rx)
}

export function encodeItemFast (p: number, s: number, device: string, seq: number | null, boot: Boot | null, ts: number | null, rx: number, values: Values): Buffer {
  room(bound(device, boot, values))
  const start = pos
  fields(p, s, device, seq, boot, ts, rx)
  head(0xa0, entries)
  for (const k in values) {
    text(k)
    const v = values[k]!
    if (typeof v === 'number') number(v)
    else if (typeof v === 'string') text(v)
    else slab[pos++] = v ? 0xf5 : 0xf4
  }
  return slab.subarray(start, pos)
}

/**
 * `encodeItemFast` for a reading that reading-scan.ts validated in place: the values are
 * read from their span of the payload and written entry by entry as `encodeItemFast` writes
 * the decoded object (names and ASCII text copied under a minimal head, numbers through
 * `number`, so a float64 1.0 becomes the integer 1 as it does after decoding, and a -0 of any
 * float width stays a float64 -0). The span is
 * trusted: `scanReading` checked every head, length and type in it.
 */
export function encodeItemSpan (p: number, s: number, device: string, seq: number | null, boot: Boot | null, ts: number | null, rx: number, span: ValuesSpan): Buffer {
  const src = span.buf
  // every entry grows by at most its head bytes (a non-minimal head only shrinks) plus a
  // float64 for a shorter float or integer: 9 bytes
  room(1 + 3 + 9 * 4 + 2 * 9 + device.length * 3 + 5 + (typeof boot === 'string' ? boot.length * 3 + 5 : 0) + (span.end - span.start) + 9 * 2 * span.count + 5)
  const start = pos
  fields(p, s, device, seq, boot, ts, rx)
  head(0xa0, span.count)
  const end = src.length
  let i = readHead(src, span.start, end)
  for (let e = 0; e < span.count; e++) {
    i = copyText(src, i, end)
    const ib = src[i]!
    const major = ib >> 5
    if (major === 0 || major === 1) {
      i = readHead(src, i, end)
      number(major === 0 ? headArg() : -1 - headArg())
    } else if (major === 3) {
      i = copyText(src, i, end)
    } else if (major === 7 && (ib === 0xf4 || ib === 0xf5)) {
      slab[pos++] = ib
      i++
    } else {
      number(floatAt(src, i))
      i += ib === 0xf9 ? 3 : ib === 0xfa ? 5 : 9
    }
  }
  return slab.subarray(start, pos)
}

/** Copies the (validated, ASCII) text at b[i] under a minimal head; returns the index after it. */
function copyText (b: Uint8Array, i: number, end: number): number {
  const j = readHead(b, i, end)
  const n = headArg()
  head(0x60, n)
  for (let k = 0; k < n; k++) slab[pos + k] = b[j + k]!
  pos += n
  return j + n
}
