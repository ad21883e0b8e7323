/**
 * A small CBOR writer with full control of every head and float width, for the columnar
 * upstream protocol v2 (docs/protocol-v2.md). cbor-x's encoder writes integers above 2^32
 * as float64 and never writes float16; v2 needs the shortest exact form of each number:
 * integers as CBOR integers (major 0/1, up to 2^53 in magnitude), other numbers as float16
 * or float32 when that width holds the same float64 bits, float64 otherwise.
 *
 * Output is RFC 8949 preferred serialization (shortest heads, definite lengths), so any
 * decoder (cbor-x, Python's cbor2) reads it.
 */

const f32 = new DataView(new ArrayBuffer(4))

/** The float16 bit pattern of v when float16 holds exactly v, else -1. NaN is not handled (v2 never carries it). */
export function float16Bits (v: number): number {
  if (Math.fround(v) !== v && !Number.isNaN(v)) return -1
  f32.setFloat32(0, v)
  const x = f32.getUint32(0)
  const sign = (x >>> 31) << 15
  const exp = (x >>> 23) & 0xff
  const mant = x & 0x7fffff
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : -1
  if (exp === 0) return mant === 0 ? sign : -1 // ±0; float32 subnormals are far below float16's range
  const e = exp - 127
  if (e > 15 || e < -24) return -1
  if (e >= -14) return (mant & 0x1fff) !== 0 ? -1 : sign | ((e + 15) << 10) | (mant >>> 13)
  // float16 subnormal: value = m * 2^-24 with m < 1024
  const full = mant | 0x800000
  const shift = -e - 1
  return (full & ((1 << shift) - 1)) !== 0 ? -1 : sign | (full >>> shift)
}

export class CborWriter {
  private buf: Buffer
  private pos = 0

  constructor (initial = 4096) {
    this.buf = Buffer.allocUnsafe(initial)
  }

  private room (n: number): void {
    if (this.pos + n <= this.buf.length) return
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n))
    this.buf.copy(next, 0, 0, this.pos)
    this.buf = next
  }

  /** Head of major type `major` (0..7) with an unsigned argument below 2^53. */
  head (major: number, n: number): this {
    this.room(9)
    const m = major << 5
    const b = this.buf
    if (n < 24) {
      b[this.pos++] = m | n
    } else if (n < 0x100) {
      b[this.pos++] = m | 24; b[this.pos++] = n
    } else if (n < 0x10000) {
      b[this.pos++] = m | 25; b.writeUInt16BE(n, this.pos); this.pos += 2
    } else if (n <= 0xffffffff) {
      b[this.pos++] = m | 26; b.writeUInt32BE(n, this.pos); this.pos += 4
    } else {
      b[this.pos++] = m | 27
      b.writeUInt32BE(Math.floor(n / 0x100000000), this.pos)
      b.writeUInt32BE(n >>> 0, this.pos + 4)
      this.pos += 8
    }
    return this
  }

  /** A safe integer (|n| < 2^53) as CBOR major 0 or 1. */
  int (n: number): this {
    return n >= 0 ? this.head(0, n) : this.head(1, -1 - n)
  }

  array (n: number): this { return this.head(4, n) }
  map (n: number): this { return this.head(5, n) }

  text (s: string): this {
    const n = Buffer.byteLength(s)
    this.head(3, n)
    this.room(n)
    this.pos += this.buf.write(s, this.pos, 'utf8')
    return this
  }

  bytes (b: Uint8Array): this {
    this.head(2, b.length)
    this.room(b.length)
    this.buf.set(b, this.pos)
    this.pos += b.length
    return this
  }

  bool (v: boolean): this {
    this.room(1)
    this.buf[this.pos++] = v ? 0xf5 : 0xf4
    return this
  }

  null (): this {
    this.room(1)
    this.buf[this.pos++] = 0xf6
    return this
  }

  /** A non-integer number (or -0) in the shortest float width that holds it exactly. */
  float (v: number): this {
    this.room(9)
    const b = this.buf
    const h = float16Bits(v)
    if (h >= 0) { b[this.pos++] = 0xf9; b.writeUInt16BE(h, this.pos); this.pos += 2; return this }
    if (Math.fround(v) === v) { b[this.pos++] = 0xfa; b.writeFloatBE(v, this.pos); this.pos += 4; return this }
    b[this.pos++] = 0xfb
    b.writeDoubleBE(v, this.pos)
    this.pos += 8
    return this
  }

  /** Integers as integers, anything else as the shortest exact float. */
  number (v: number): this {
    return Number.isSafeInteger(v) && !Object.is(v, -0) ? this.int(v) : this.float(v)
  }

  /** Copies out what was written. */
  finish (): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos))
  }
}
