/**
 * How the dead-letter tools show a record's bytes, whatever they hold (once,
 * a dead-lettered `{"values":{"a":tag2(h'01')}}` decoded to a BigInt, `JSON.stringify`
 * threw, and `/dlq`, `dlq show` and `dlq export` failed on it until it was purged blind).
 *
 * - `decodeForView` decodes a stored payload or item for display. It is the one reader that
 *   lets a few tags through (older versions dead-lettered payloads that carry them): dates
 *   (0, 1), bignums (2, 3, at most VIEW_MAX_BIGNUM_BYTES), sets (258) and maps (259); the
 *   scanner's depth and item limits still apply. Anything else it cannot decode is no
 *   value but an error string, shown next to the raw bytes.
 * - `jsonSafe` turns any decoded value into one `JSON.stringify` writes without throwing
 *   and without losing what it is: values JSON has no form for become one-key objects whose
 *   key starts with `$` (table in docs/operator.md).
 */
import { decodeUntrusted, textPayloadError } from '../../protocol/index.ts'

/** The tags a dead letter's bytes may carry for display (never on the intake path). */
export const VIEW_TAGS: readonly number[] = [0, 1, 2, 3, 258, 259]
/** A bignum longer than this (a 512-bit number) is not decoded: cbor-x builds it in quadratic time. */
export const VIEW_MAX_BIGNUM_BYTES = 64
const MAX_DEPTH = 32

export type Decoded = { value: unknown, error?: undefined } | { value: null, error: string }

/** The value of a stored payload (JSON or CBOR) or item, for display; never throws. */
export function decodeForView (raw: Buffer, kind: string): Decoded {
  try {
    if (raw.length === 0) return { value: null, error: 'no bytes stored' }
    const first = raw.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09)
    if (first === 0x7b) return { value: JSON.parse(raw.toString('utf8')) as unknown }
    const v = decodeUntrusted(raw, { maxDepth: 6, maxItems: 4096, allowTags: VIEW_TAGS, maxBignumBytes: VIEW_MAX_BIGNUM_BYTES })
    if (kind === 'item' && Array.isArray(v) && v.length === 8) {
      const [p, s, device, seq, boot, ts, rx, values] = v as unknown[]
      return { value: { p, s, device, seq, boot, ts, rx, values } }
    }
    return { value: v }
  } catch (err) {
    // not CBOR (nor a JSON object) but text, by the intake's own rule (payload-text.ts): a
    // payload typed by hand (`mosquitto_pub -m 21.5`) is shown as that text. Read as CBOR it
    // gave `3 trailing bytes after the CBOR item`, beside a reason that already said what
    // was wrong.
    if (kind === 'payload') {
      const i = raw.findIndex((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09)
      if (i >= 0 && textPayloadError(raw, i, false) !== null) return { value: { $text: raw.toString('utf8') } }
    }
    return { value: null, error: err instanceof Error ? err.message : String(err) }
  }
}

/** A copy of `v` that `JSON.stringify` writes whole and without throwing. */
export function jsonSafe (v: unknown): unknown {
  return safe(v, 0, new Set())
}

function safe (v: unknown, depth: number, path: Set<object>): unknown {
  switch (typeof v) {
    case 'string': case 'boolean': return v
    case 'number': return Number.isFinite(v) ? v : { $number: String(v) }
    case 'bigint': return { $bigint: v.toString() }
    case 'undefined': return { $undefined: true }
    case 'symbol': case 'function': return { $unsupported: typeof v }
  }
  if (v === null) return null
  const o = v as object
  if (depth >= MAX_DEPTH) return { $truncated: `deeper than ${MAX_DEPTH} levels` }
  if (path.has(o)) return { $cycle: true }
  if (ArrayBuffer.isView(o)) {
    const bytes = Buffer.from(o.buffer, o.byteOffset, o.byteLength).toString('base64')
    return o instanceof Uint8Array ? { $base64: bytes } : { $base64: bytes, $type: o.constructor.name }
  }
  if (o instanceof Date) return { $date: Number.isFinite(o.getTime()) ? o.toISOString() : 'invalid date' }
  if (o instanceof Error) return { $error: String(o.message) }
  if (o instanceof RegExp) return { $regexp: o.source }
  path.add(o)
  try {
    const next = depth + 1
    if (Array.isArray(o)) return o.map((x) => safe(x, next, path))
    if (o instanceof Map) return { $map: [...o].map(([k, x]) => [safe(k, next, path), safe(x, next, path)]) }
    if (o instanceof Set) return { $set: [...o].map((x) => safe(x, next, path)) }
    // cbor-x's Tag (an unknown tag an older version let through): { tag, value }
    if (o.constructor?.name === 'Tag' && 'tag' in o && 'value' in o) return { $tag: safe(o.tag, next, path), value: safe(o.value, next, path) }
    // own enumerable keys only, into an object without a prototype: "__proto__", "toJSON"
    // or "toString" are data here, never behaviour
    const out = Object.create(null) as Record<string, unknown>
    for (const k of Object.keys(o)) {
      const x = safe((o as Record<string, unknown>)[k], next, path)
      Object.defineProperty(out, k, { value: x, enumerable: true, writable: true, configurable: true })
    }
    return out
  } finally {
    path.delete(o)
  }
}

/** An ISO time for `ms`, or a marker when it is not a valid time (a damaged record). */
export function isoTime (ms: number): string {
  const d = new Date(ms)
  return Number.isFinite(d.getTime()) ? d.toISOString() : `invalid time ${String(ms)}`
}
