/**
 * The wire CBOR of every hop. Standard RFC 8949 only: no cbor-x records or structures, no
 * typed-array tags, minimal map headers, integers above 2^32 written as uint64 (cbor-x
 * would write them as float64 otherwise). Untrusted bytes are checked by `scanCbor`
 * (iterative: bounded depth, every declared length within the remaining bytes) before the
 * no-eval cbor-x decoder sees them, so a 9-byte "array of 4 billion items" costs nothing.
 *
 * No CBOR tag (major type 6) is accepted on untrusted input: no format of this
 * project has one (docs/design.md section 6, docs/protocol-v2.md; device timestamps are
 * uint64 milliseconds, not tag 1), and cbor-x's tag handlers are where its costs and state
 * live: a bignum (tag 2/3) is built byte by byte, quadratic (16 KiB took ~25 ms, 64 KiB
 * ~420 ms), tag 27 calls `RegExp`, tags 28/29 build cycles, record tags define structures
 * that outlive the call. The scanner refuses the tag head, naming its number and offset,
 * before cbor-x runs. `allowTags` names exceptions (only the dead-letter tools' display of
 * stored bytes has any: gateway/dlq/render.ts); an allowed bignum must be a definite byte
 * string of at most `maxBignumBytes` (default 8).
 *
 * What cbor-x would change rather than refuse is refused here too, where a format asks for
 * it (`textKeys`, `utf8`; readings do): cbor-x makes a map key `1`, `1.0` or `true` the
 * property name "1" or "true", keeps the last of two equal keys, and decodes invalid UTF-8
 * with U+FFFD in place of the bad bytes. Each refusal names the map keys leading to it
 * (a ValidationError whose `field` is `values.t`), so a dead letter's reason says which
 * field was wrong.
 */
import { Encoder } from 'cbor-x'
import { Decoder } from 'cbor-x/decode-no-eval'
import { DecodeError, ValidationError } from './errors.ts'

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
  /**
   * Every map key is a text string and no map has two equal keys (RFC 8949 section 5.6: such
   * a map is not valid); duplicates are compared byte for byte among definite-length keys.
   */
  textKeys?: boolean
  /** Every text string is valid UTF-8 (RFC 8949 section 3.1, major type 3). */
  utf8?: boolean
  /** What an error names when the fault is in the top-level item itself (default `payload`). */
  root?: string
}

/** The default `maxBignumBytes`: a bignum is only ever accepted up to a uint64's width. */
export const MAX_BIGNUM_BYTES = 8

/** The reason a tag is refused; the DecodeError message (a dead letter's reason, a 400's message). */
export function tagRefused (tag: number, at: number): string {
  return `CBOR tag ${tag} at byte ${at} is not accepted (untrusted CBOR carries no tags)`
}

let scanStack = new Float64Array(16)
/**
 * Per open container, kept only when `textKeys` or `utf8` asks for it: whether it is a map,
 * whether its next item is a value (else a key), where its last key's bytes are (-1: not a
 * definite text), and where its keys start in `keySpans` (start, length pairs of the keys of
 * every open map, innermost last, up to `keyTop`).
 */
let mapKind = new Uint8Array(16)
let atValue = new Uint8Array(16)
let keyAt = new Int32Array(16)
let keyLen = new Int32Array(16)
let keyBase = new Int32Array(16)
let keySpans = new Int32Array(64)
let keyTop = 0

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
  const textKeys = limits.textKeys === true
  const utf8 = limits.utf8 === true
  const track = textKeys || utf8
  if (track && mapKind.length < need) {
    mapKind = new Uint8Array(need); atValue = new Uint8Array(need); keyAt = new Int32Array(need); keyLen = new Int32Array(need); keyBase = new Int32Array(need)
  }
  if (track) { mapKind[0] = 0; keyTop = 0 }
  let sp = 0
  stack[0] = 1
  let pos = 0
  let items = 0
  while (sp >= 0) {
    const top = sp
    if (stack[top] === 0) {
      if (track && mapKind[top] === 1) keyTop = keyBase[top]!
      sp--
      continue
    }
    if (pos >= len) throw new DecodeError(`truncated CBOR: item expected at byte ${pos}`)
    const at = pos
    const ib = buf[pos++]!
    if (ib === 0xff) {
      if (stack[top] !== -1 && stack[top]! > -10) throw new DecodeError(`unexpected CBOR break at byte ${pos - 1}`)
      if (track && mapKind[top] === 1) keyTop = keyBase[top]!
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
    let isKey = false
    if (track && mapKind[top] === 1) {
      isKey = atValue[top] === 0
      atValue[top] = isKey ? 1 : 0
      if (isKey) {
        keyAt[top] = -1
        if (textKeys && major !== 3) throw new ValidationError(pathOf(buf, top, false, limits.root), `map key at byte ${at} is ${describeItem(major, ib, arg)}, not text`)
      }
    }
    switch (major) {
      case 2: case 3:
        if (indefinite) stack[++sp] = -10 - major
        else if (arg > remaining) throw new DecodeError(`CBOR string declares ${arg} bytes, only ${remaining} left`)
        else {
          if (major === 3 && track) {
            if (utf8 && invalidUtf8At(buf, pos, pos + arg) >= 0) {
              throw new ValidationError(pathOf(buf, top, !isKey, limits.root), `${isKey ? 'map key' : 'text'} at byte ${at} is not valid UTF-8`)
            }
            if (isKey) {
              if (textKeys) {
                for (let k = keyBase[top]!; k < keyTop; k += 2) {
                  if (keySpans[k + 1] === arg && sameBytes(buf, keySpans[k]!, pos, arg)) {
                    throw new ValidationError(pathOf(buf, top, false, limits.root), `map key ${JSON.stringify(textAt(buf, pos, arg))} at byte ${at} appears twice`)
                  }
                }
                if (keyTop + 2 > keySpans.length) { const grown = new Int32Array(keySpans.length * 2); grown.set(keySpans); keySpans = grown }
                keySpans[keyTop++] = pos
                keySpans[keyTop++] = arg
              }
              keyAt[top] = pos
              keyLen[top] = arg
            }
          }
          pos += arg
        }
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
        else break
        if (track) { mapKind[sp] = 1; atValue[sp] = 0; keyAt[sp] = -1; keyBase[sp] = keyTop }
        break
      case 6:
        if (limits.allowTags === undefined || !limits.allowTags.includes(arg)) throw new DecodeError(tagRefused(arg, at))
        if (arg === 2 || arg === 3) checkBignum(buf, pos, at, limits.maxBignumBytes ?? MAX_BIGNUM_BYTES)
        stack[++sp] = 1
        break
      default: // 0, 1: integers; 7: simple values and floats, argument already skipped
    }
    if (track && sp > top && major !== 5) mapKind[sp] = 0
    if (sp > limits.maxDepth) throw new DecodeError(`CBOR nesting deeper than ${limits.maxDepth}`)
  }
  if (pos !== len) throw new DecodeError(`${len - pos} trailing bytes after the CBOR item`)
}

/**
 * The map keys leading to the item being read at level `top` (`values.t`): the key of each
 * enclosing map entry, and with `withTop` the key of the entry the item is the value of.
 * `root` (default `payload`) when there is none. Only for error messages.
 */
function pathOf (buf: Uint8Array, top: number, withTop: boolean, root = 'payload'): string {
  const parts: string[] = []
  for (let l = 1; l <= (withTop ? top : top - 1); l++) {
    if (mapKind[l] !== 1) continue
    parts.push(keyAt[l]! < 0 ? '?' : textAt(buf, keyAt[l]!, Math.min(keyLen[l]!, 80)))
  }
  return parts.length > 0 ? parts.join('.') : root
}

function textAt (buf: Uint8Array, start: number, n: number): string {
  return Buffer.from(buf.buffer, buf.byteOffset + start, n).toString('utf8')
}

function sameBytes (b: Uint8Array, s1: number, s2: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (b[s1 + k] !== b[s2 + k]) return false
  return true
}

/** An item that is not text, for an error message: `the integer 1`, `a byte string`, `true`. */
function describeItem (major: number, ib: number, arg: number): string {
  switch (major) {
    case 0: return `the integer ${arg}`
    case 1: return `the integer ${-1 - arg}`
    case 2: return 'a byte string'
    case 4: return 'an array'
    case 5: return 'a map'
    case 6: return `a tag ${arg}`
    default:
      if (ib === 0xf4) return 'false'
      if (ib === 0xf5) return 'true'
      if (ib === 0xf6) return 'null'
      if (ib === 0xf7) return 'undefined'
      if (ib >= 0xf9 && ib <= 0xfb) return 'a float'
      return `the simple value ${arg}`
  }
}

/**
 * The index of the first byte of b[start, end) that does not begin a well-formed UTF-8
 * sequence (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or -1.
 */
export function invalidUtf8At (b: Uint8Array, start: number, end: number): number {
  let i = start
  while (i < end) {
    const c = b[i]!
    if (c < 0x80) { i++; continue }
    let n: number
    if (c >= 0xc2 && c <= 0xdf) n = 1
    else if (c >= 0xe0 && c <= 0xef) n = 2
    else if (c >= 0xf0 && c <= 0xf4) n = 3
    else return i
    if (i + n >= end) return i
    // the second byte's range is narrower after E0 (overlong), ED (surrogates), F0 (overlong), F4 (> U+10FFFF)
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf
    const c1 = b[i + 1]!
    if (c1 < lo || c1 > hi) return i
    for (let k = 2; k <= n; k++) {
      const ck = b[i + k]!
      if (ck < 0x80 || ck > 0xbf) return i
    }
    i += n + 1
  }
  return -1
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
