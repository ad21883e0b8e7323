/**
 * Reading payloads of docs/design.md section 3: a CBOR map, or a JSON object when the first
 * non-whitespace byte is `{`. Every rejection names the field.
 *
 * What is stored is what the device sent, or nothing: a map key that is not text (cbor-x
 * would make `1` the name "1"), a key twice in one map (cbor-x keeps the last), and text that
 * is not valid UTF-8 (decoded with U+FFFD in place of the bad bytes) are refused, not
 * changed; `-0` stays `-0` (item-encoder.ts).
 */
import { isUtf8 } from 'node:buffer'
import { decodeUntrusted, invalidUtf8At } from './cbor.ts'
import { DecodeError, ValidationError } from './errors.ts'
import { checkExactIntegers, textPayloadError } from './payload-text.ts'

export type Value = number | boolean | string
export type Values = Record<string, Value>
export type Boot = number | string

export type Reading = {
  seq: number | null
  boot: Boot | null
  ts: number | null
  values: Values
}

export const READING_LIMITS = {
  maxValues: 64,
  maxTextBytes: 256,
  maxBootBytes: 64,
  maxDepth: 4
} as const

export const VALUE_NAME_RE = /^[A-Za-z0-9_.:-]{1,64}$/
const KNOWN_FIELDS = new Set(['seq', 'boot', 'ts', 'values'])

function isUint (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

function utf8Length (s: string): number {
  return s.length < 64 ? Buffer.byteLength(s) : Buffer.byteLength(s, 'utf8')
}

/** Decodes and validates a payload; throws DecodeError or ValidationError. */
export function decodeReading (payload: Uint8Array, maxPayloadBytes: number): Reading {
  if (payload.length === 0) throw new DecodeError('empty payload')
  if (payload.length > maxPayloadBytes) throw new ValidationError('payload', `${payload.length} bytes exceeds maxPayloadBytes ${maxPayloadBytes}`)
  let i = 0
  while (i < payload.length && (payload[i] === 0x20 || payload[i] === 0x0a || payload[i] === 0x0d || payload[i] === 0x09)) i++
  let raw: unknown
  if (payload[i] === 0x7b) {
    const bad = isUtf8(payload) ? -1 : invalidUtf8At(payload, i, payload.length)
    if (bad >= 0) {
      const before = Buffer.from(payload.buffer, payload.byteOffset + Math.max(i, bad - 40), Math.min(40, bad - i)).toString('utf8')
      throw new DecodeError(`malformed JSON: not valid UTF-8 at byte ${bad}, after ${JSON.stringify(before)}`)
    }
    const text = Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('utf8')
    try {
      raw = JSON.parse(text)
    } catch (err) {
      throw new DecodeError(`malformed JSON: ${(err as Error).message}`, { cause: err })
    }
    const r = validateReading(raw)
    checkExactIntegers(text, r.values)
    return r
  }
  const asJson = textPayloadError(payload, i, true)
  if (asJson) throw asJson
  try {
    raw = decodeUntrusted(payload, { maxDepth: READING_LIMITS.maxDepth, maxItems: 4 * READING_LIMITS.maxValues + 16, textKeys: true, utf8: true })
  } catch (err) {
    throw textPayloadError(payload, i, false) ?? err
  }
  return validateReading(raw)
}

export function validateReading (raw: unknown): Reading {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || raw instanceof Uint8Array) {
    throw new ValidationError('payload', 'must be a map/object')
  }
  const obj = raw as Record<string, unknown>
  // for-in, not Object.keys: no array per reading (a plain decoded object has no inherited
  // enumerable keys)
  for (const k in obj) {
    if (!KNOWN_FIELDS.has(k)) throw new ValidationError(k, 'unknown field (allowed: seq, boot, ts, values)')
  }
  const seq = obj.seq ?? null
  if (seq !== null && !isUint(seq)) throw new ValidationError('seq', 'must be an unsigned integer below 2^53')
  const boot = obj.boot ?? null
  if (boot !== null) {
    if (typeof boot === 'string') {
      if (utf8Length(boot) > READING_LIMITS.maxBootBytes) throw new ValidationError('boot', `text longer than ${READING_LIMITS.maxBootBytes} bytes`)
    } else if (!isUint(boot)) {
      throw new ValidationError('boot', 'must be an unsigned integer below 2^53 or text')
    }
  }
  const ts = obj.ts ?? null
  if (ts !== null && !isUint(ts)) throw new ValidationError('ts', 'must be milliseconds since the epoch as an unsigned integer')
  const values = validateValues(obj.values, 'values')
  return { seq, boot: boot as Boot | null, ts, values }
}

export function validateValues (v: unknown, field: string): Values {
  if (v === undefined || v === null) throw new ValidationError(field, 'required')
  if (typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new ValidationError(field, 'must be a map of name -> number, boolean or text')
  const src = v as Record<string, unknown>
  let n = 0
  for (const _ in src) if (++n > READING_LIMITS.maxValues) throw new ValidationError(field, `has ${Object.keys(src).length} entries, at most ${READING_LIMITS.maxValues}`)
  if (n === 0) throw new ValidationError(field, 'must have at least one entry')
  for (const k in src) {
    if (!VALUE_NAME_RE.test(k)) throw new ValidationError(`${field}.${k.slice(0, 80)}`, 'name must match ^[A-Za-z0-9_.:-]{1,64}$')
    // cbor-x renames a decoded "__proto__" key to "__proto_" (prototype pollution guard), so
    // either name would reach the ingest changed or not at all: refused, never altered
    if (k === '__proto__' || k === '__proto_') throw new ValidationError(`${field}.${k}`, 'the names __proto__ and __proto_ are reserved')
    const x = src[k]
    if (typeof x === 'number') {
      if (!Number.isFinite(x)) throw new ValidationError(`${field}.${k}`, 'number must be finite')
    } else if (typeof x === 'string') {
      if (utf8Length(x) > READING_LIMITS.maxTextBytes) throw new ValidationError(`${field}.${k}`, `text longer than ${READING_LIMITS.maxTextBytes} bytes`)
    } else if (typeof x !== 'boolean') {
      throw new ValidationError(`${field}.${k}`, 'must be a number, boolean or text')
    }
  }
  // the decoded object itself (a fresh plain object from JSON.parse or the CBOR decoder,
  // names checked above): a copy into a null-prototype object would be a dictionary-mode
  // object that every later encode walks several times slower
  return src as Values
}
