/**
 * A mapped topic's payload -> a reading: a JSON object (numeric and boolean fields,
 * nested ones flattened with the separator, or the `values` paths picked) or a plain
 * number. Text fields are skipped (Tasmota's "Time", units). Every refusal says why.
 */
import { READING_LIMITS, ValidationError, validateValues, type Reading, type Values } from '../../protocol/index.ts'
import type { Mapping } from './config.ts'

const NAME_BAD = /[^A-Za-z0-9_.:-]/g

function cleanName (n: string): string {
  return n.replace(NAME_BAD, '_').slice(0, 64)
}

function at (obj: unknown, path: string): unknown {
  let cur = obj
  for (const k of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined
    cur = (cur as Record<string, unknown>)[k]
  }
  return cur
}

function flatten (obj: Record<string, unknown>, sep: string, prefix: string, out: Values, skip: Set<string>, path: string, depth: number): void {
  if (depth > 8) return
  for (const [k, v] of Object.entries(obj)) {
    const p = path ? `${path}.${k}` : k
    if (skip.has(p)) continue
    const name = prefix ? `${prefix}${sep}${k}` : k
    if (typeof v === 'number' || typeof v === 'boolean') {
      if (typeof v === 'number' && !Number.isFinite(v)) continue
      out[cleanName(name)] = v
    } else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      flatten(v as Record<string, unknown>, sep, name, out, skip, p, depth + 1)
    }
  }
}

function plainNumber (text: string): number | null {
  const t = text.trim()
  if (!/^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return null
  const n = Number(t)
  return Number.isFinite(n) ? n : null
}

export function mappedReading (m: Mapping, named: Record<string, string>, payload: Buffer, maxPayloadBytes: number): Reading {
  if (payload.length > maxPayloadBytes) throw new ValidationError('payload', `${payload.length} bytes exceeds maxPayloadBytes ${maxPayloadBytes}`)
  const text = payload.toString('utf8')
  const valueName = cleanName(m.value.replace(/\{([^}]*)\}/g, (_x, n: string) => named[n] ?? ''))
  if (m.format !== 'json') {
    const n = plainNumber(text)
    if (n !== null) return { seq: null, boot: null, ts: null, values: validateValues({ [valueName]: n }, 'values') }
    if (m.format === 'number') throw new ValidationError('payload', `is not a plain number (${JSON.stringify(text.slice(0, 40))})`)
  }
  let obj: unknown
  try { obj = JSON.parse(text) } catch (err) {
    throw new ValidationError('payload', `is neither a JSON object nor a plain number (${(err as Error).message})`)
  }
  if (typeof obj === 'boolean') return { seq: null, boot: null, ts: null, values: validateValues({ [valueName]: obj }, 'values') }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new ValidationError('payload', 'must be a JSON object or a plain number')
  const skip = new Set([m.seq, m.ts].filter((x): x is string => x !== null))
  const values: Values = {}
  if (m.values) {
    for (const [name, path] of Object.entries(m.values)) {
      const v = at(obj, path)
      if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string') values[name] = v
    }
  } else {
    flatten(obj as Record<string, unknown>, m.separator, '', values, skip, '', 0)
  }
  if (Object.keys(values).length === 0) throw new ValidationError('values', `no numeric or boolean field${m.values ? ` at the mapped paths ${Object.values(m.values).join(', ')}` : ''}`)
  if (Object.keys(values).length > READING_LIMITS.maxValues) throw new ValidationError('values', `${Object.keys(values).length} fields, at most ${READING_LIMITS.maxValues}: pick the ones to keep with the mapping's "values"`)
  const num = (path: string | null, field: string): number | null => {
    if (path === null) return null
    const v = at(obj, path)
    if (v === undefined || v === null) return null
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ValidationError(field, `${path} must be an unsigned integer below 2^53`)
    return v
  }
  return { seq: num(m.seq, 'seq'), boot: null, ts: num(m.ts, 'ts'), values: validateValues(values, 'values') }
}
