/**
 * The wire CBOR of every hop. Standard RFC 8949 only: no cbor-x records or structures, no
 * typed-array tags, minimal map headers, integers above 2^32 written as uint64 (cbor-x
 * would write them as float64 otherwise). Untrusted bytes are checked by `scanCbor`
 * (iterative: bounded depth, every declared length within the remaining bytes) before the
 * no-eval cbor-x decoder sees them, so a 9-byte "array of 4 billion items" costs nothing.
 *
 * No CBOR tag (major type 6) is accepted on untrusted input (issue #19): no format of this
 * project has one (docs/design.md section 6, docs/protocol-v2.md; device timestamps are
 * uint64 milliseconds, not tag 1), and cbor-x's tag handlers are where its costs and state
 * live: a bignum (tag 2/3) is built byte by byte, quadratic (16 KiB took ~25 ms, 64 KiB
 * ~420 ms), tag 27 calls `RegExp`, tags 28/29 build cycles, record tags define structures
 * that outlive the call. The scanner refuses the tag head, naming its number and offset,
 * before cbor-x runs. `allowTags` names exceptions (only the dead-letter tools' display of
 * stored bytes has any: gateway/dlq/render.ts); an allowed bignum must be a definite byte
 * string of at most `maxBignumBytes` (default 8).
 */
import { Encoder } from 'cbor-x'
import { Decoder } from 'cbor-x/decode-no-eval'
import { DecodeError } from './errors.ts'

export const wireEncoder = new Encoder({
  useRecords: false,
  tagUint8Array: false,
  mapsAsObjects: true,
  variableMapSize: true,
  useTag259ForMaps: false
} as ConstructorParameters<typeof Encoder>[0])

const untrustedDecoder = new Decoder({
  useRecords: false,
  mapsAsObjects: true,
  int64AsNumber: true
} as ConstructorParameters<typeof Decoder>[0])

export function encodeCbor (value: unknown): Buffer {
  return wireEncoder.encode(value) as Buffer
}

/** Integers cbor-x would encode as float64 become BigInt so they go out as CBOR uint64. */
export function wireUint (n: number): number | bigint {
  return n > 0xffffffff ? BigInt(n) : n
}

export type ScanLimits = {
  maxDepth: number
  maxItems?: number
  /** tag numbers accepted anyway (default none) */
  allowTags?: readonly number[]
  /** byte length cap of an allowed bignum (tags 2 and 3); default 8 */
  maxBignumBytes?: number
}

/** The default `maxBignumBytes`: a bignum is only ever accepted up to a uint64's width. */
export const MAX_BIGNUM_BYTES = 8

/** The reason a tag is refused; the DecodeError message (a dead letter's reason, a 400's message). */
export function tagRefused (tag: number, at: number): string {
  return `CBOR tag ${tag} at byte ${at} is not accepted (untrusted CBOR carries no tags)`
}

let scanStack = new Float64Array(16)

/** Checks that `buf` holds exactly one well-formed CBOR item within the limits. */
export function scanCbor (buf: Uint8Array, limits: ScanLimits): void {
  const len = buf.length
  const maxItems = limits.maxItems ?? Infinity
  // items still expected per open container; -1 = indefinite array/map; -12/-13 = indefinite
  // byte/text string, whose chunks must be definite strings of the same type. One stack
  // for every call (it runs once per reading; never re-entered): `sp` is its top.
  const need = Math.min(limits.maxDepth, len) + 3
  if (scanStack.length < need) scanStack = new Float64Array(need)
  const stack = scanStack
  let sp = 0
  stack[0] = 1
  let pos = 0
  let items = 0
  while (sp >= 0) {
    const top = sp
    if (stack[top] === 0) { sp--; continue }
    if (pos >= len) throw new DecodeError(`truncated CBOR: item expected at byte ${pos}`)
    const at = pos
    const ib = buf[pos++]!
    if (ib === 0xff) {
      if (stack[top] !== -1 && stack[top]! > -10) throw new DecodeError(`unexpected CBOR break at byte ${pos - 1}`)
      sp--
      continue
    }
    if (stack[top]! > 0) stack[top]!--
    if (++items > maxItems) throw new DecodeError(`CBOR has more than ${maxItems} items`)
    const major = ib >> 5
    const ai = ib & 31
    if (stack[top]! <= -10 && (major !== -stack[top]! - 10 || ai === 31)) throw new DecodeError(`chunk of an indefinite-length string must be a definite string of the same type (byte ${pos - 1})`)
    let arg = ai
    let indefinite = false
    if (ai >= 24) {
      if (ai === 31) {
        if (major < 2 || major > 5) throw new DecodeError(`invalid CBOR initial byte 0x${ib.toString(16)} at byte ${pos - 1}`)
        indefinite = true
      } else if (ai > 27) {
        throw new DecodeError(`invalid CBOR initial byte 0x${ib.toString(16)} at byte ${pos - 1}`)
      } else {
        const n = 1 << (ai - 24)
        if (pos + n > len) throw new DecodeError(`truncated CBOR: header at byte ${pos - 1}`)
        if (n === 1) arg = buf[pos]!
        else if (n === 2) arg = (buf[pos]! << 8) | buf[pos + 1]!
        else if (n === 4) arg = ((buf[pos]! << 24) >>> 0) + ((buf[pos + 1]! << 16) | (buf[pos + 2]! << 8) | buf[pos + 3]!)
        else {
          arg = (((buf[pos]! << 24) >>> 0) + ((buf[pos + 1]! << 16) | (buf[pos + 2]! << 8) | buf[pos + 3]!)) * 0x100000000 +
            (((buf[pos + 4]! << 24) >>> 0) + ((buf[pos + 5]! << 16) | (buf[pos + 6]! << 8) | buf[pos + 7]!))
        }
        pos += n
        if (major === 7 && ai === 24 && arg < 32) throw new DecodeError(`invalid two-byte simple value ${arg} at byte ${pos - 2}`)
      }
    }
    const remaining = len - pos
    switch (major) {
      case 2: case 3:
        if (indefinite) stack[++sp] = -10 - major
        else if (arg > remaining) throw new DecodeError(`CBOR string declares ${arg} bytes, only ${remaining} left`)
        else pos += arg
        break
      case 4:
        if (indefinite) stack[++sp] = -1
        else if (arg > remaining) throw new DecodeError(`CBOR array declares ${arg} items, only ${remaining} bytes left`)
        else if (arg > 0) stack[++sp] = arg
        break
      case 5:
        if (indefinite) stack[++sp] = -1
        else if (arg * 2 > remaining) throw new DecodeError(`CBOR map declares ${arg} pairs, only ${remaining} bytes left`)
        else if (arg > 0) stack[++sp] = arg * 2
        break
      case 6:
        if (limits.allowTags === undefined || !limits.allowTags.includes(arg)) throw new DecodeError(tagRefused(arg, at))
        if (arg === 2 || arg === 3) checkBignum(buf, pos, at, limits.maxBignumBytes ?? MAX_BIGNUM_BYTES)
        stack[++sp] = 1
        break
      default: // 0, 1: integers; 7: simple values and floats, argument already skipped
    }
    if (sp > limits.maxDepth) throw new DecodeError(`CBOR nesting deeper than ${limits.maxDepth}`)
  }
  if (pos !== len) throw new DecodeError(`${len - pos} trailing bytes after the CBOR item`)
}

/** An allowed bignum's content at `pos`: a definite byte string of at most `max` bytes. */
function checkBignum (buf: Uint8Array, pos: number, at: number, max: number): void {
  const ib = pos < buf.length ? buf[pos]! : -1
  const ai = ib & 31
  let n = ai
  if (ai === 24 && pos + 1 < buf.length) n = buf[pos + 1]!
  else if (ai > 24) n = Infinity
  if (ib >> 5 !== 2 || n > max) throw new DecodeError(`CBOR bignum (tag at byte ${at}) must be a byte string of at most ${max} bytes`)
}

/** Decodes one untrusted CBOR item after `scanCbor` accepted it. */
export function decodeUntrusted (buf: Uint8Array, limits: ScanLimits): unknown {
  scanCbor(buf, limits)
  try {
    return untrustedDecoder.decode(buf)
  } catch (err) {
    throw new DecodeError(`malformed CBOR: ${(err as Error).message}`, { cause: err })
  }
}

/** Minimal CBOR head for a major type and argument (used to frame pre-encoded items). */
export function cborHead (major: number, n: number): Buffer {
  const m = major << 5
  if (n < 24) return Buffer.from([m | n])
  if (n < 0x100) return Buffer.from([m | 24, n])
  if (n < 0x10000) return Buffer.from([m | 25, n >> 8, n & 0xff])
  const b = Buffer.allocUnsafe(5)
  b[0] = m | 26
  b.writeUInt32BE(n, 1)
  return b
}

const trustedDecoder = new Decoder({ useRecords: false, mapsAsObjects: true, int64AsNumber: true } as ConstructorParameters<typeof Decoder>[0])

/**
 * Decodes CBOR this process wrote itself, without the untrusted path's limits. Not a
 * validation: a store entry corrupted on disk can still reach it (the flusher's oldest-age
 * refresh reads items that no scan has seen), so it throws on bad bytes and callers must
 * catch. The flusher's batch reads run `scanCbor` on each item before decoding it.
 */
export function decodeTrusted (buf: Uint8Array): unknown {
  return trustedDecoder.decode(buf)
}
