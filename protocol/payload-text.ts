/**
 * Clear words for payloads people send by hand: `mosquitto_pub -m 21.5` sends
 * the text "21.5", which the CBOR decoder would read as a small negative integer and
 * reject in CBOR terms; and JSON.parse silently rounds integers above 2^53.
 */
import { DecodeError, ValidationError } from './errors.ts'

const HOW = 'a reading is a JSON object such as {"seq":1,"values":{"temperature":21.5}} or a CBOR map; to store plain values from your own topics, add a topic mapping (docs/mapping.md)'

/**
 * For a payload whose first meaningful byte (index `i`) is printable ASCII other than `{`
 * (no CBOR map starts there) and that is text: the error that says what was sent instead.
 * `onlyJson`: answer only for valid JSON (a number, array, string...), so that text which
 * is also a well-formed CBOR item keeps the CBOR verdict.
 */
export function textPayloadError (payload: Uint8Array, i: number, onlyJson: boolean): DecodeError | null {
  const b = payload[i]
  if (b === undefined || b < 0x20 || b > 0x7e || b === 0x7b) return null
  const text = Buffer.from(payload.buffer, payload.byteOffset, payload.length).toString('utf8').trim()
  // only text is described as text: binary (invalid UTF-8, control bytes) keeps the CBOR error
  // eslint-disable-next-line no-control-regex -- control characters are what it looks for
  if (/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(text)) return null
  let kind = 'text'
  try {
    const v = JSON.parse(text) as unknown
    kind = typeof v === 'number' ? 'a plain number' : typeof v === 'string' ? 'a JSON string' : Array.isArray(v) ? 'a JSON array' : v === null ? 'JSON null' : `JSON ${typeof v}`
  } catch {
    if (onlyJson) return null
  }
  const shown = text.length > 40 ? `${text.slice(0, 40)}...` : text
  return new DecodeError(`payload is ${kind} (${JSON.stringify(shown)}), not a reading: ${HOW}`)
}

/**
 * True when the JSON text holds an integer literal (no fraction, no exponent) outside any
 * string with more digits than a double keeps exactly.
 */
function hasBigIntegerLiteral (text: string): boolean {
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped char
      else if (c === 0x22) inString = false
      continue
    }
    if (c === 0x22) { inString = true; continue }
    if (c >= 0x30 && c <= 0x39) {
      let j = i
      while (j < text.length && text.charCodeAt(j) >= 0x30 && text.charCodeAt(j) <= 0x39) j++
      const next = text[j]
      const prev = text[i - 1]
      if (j - i >= 16 && next !== '.' && next !== 'e' && next !== 'E' && prev !== '.' && prev !== 'e' && prev !== 'E' && prev !== '+' && prev !== '-') return true
      if (j - i >= 16 && prev === '-' && next !== '.' && next !== 'e' && next !== 'E' && text[i - 2] !== 'e' && text[i - 2] !== 'E') return true
      i = j - 1
    }
  }
  return false
}

/**
 * JSON integers above 2^53 - 1 cannot be kept exact as numbers: a value that JSON.parse
 * rounded is rejected with its field named (send it as text to keep every digit). `values`
 * is a reading's values (reading.ts `Values`), typed loosely here so that reading.ts, which
 * calls this, is the only one of the two that imports the other.
 */
export function checkExactIntegers (text: string, values: Readonly<Record<string, unknown>>, field = 'values'): void {
  let suspect: string | null = null
  for (const k of Object.keys(values)) {
    const v = values[k]
    if (typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v)) { suspect = k; break }
  }
  if (suspect === null || !hasBigIntegerLiteral(text)) return
  throw new ValidationError(`${field}.${suspect}`, 'integer beyond 2^53 - 1 cannot be kept exact as a number (JSON numbers are doubles); send it as text, e.g. "12345678901234567890"')
}
