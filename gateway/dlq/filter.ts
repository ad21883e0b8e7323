/**
 * The dead-letter filter as the CLI flags and the admin API spell it:
 * `device` (id or `*` pattern), `reason` (substring), `kind` (payload | item | too-old |
 * unreadable), `since` / `until` (ISO time, ms since epoch, or an age such as `15m`, `2h`,
 * `7d` meaning that long ago), `id` (comma-separated record ids).
 */
import { ValidationError } from '../../protocol/index.ts'
import type { DlqFilter } from '../store/dlq-reader.ts'

export const FILTER_KEYS = ['device', 'reason', 'kind', 'since', 'until', 'id'] as const
export const KINDS = ['payload', 'item', 'too-old', 'unreadable'] as const

const AGE_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** A time bound: ISO date, ms since epoch, or an age (`90s`, `15m`, `2h`, `7d`) before `now`. */
export function parseTime (field: string, v: string, now = Date.now()): number {
  const age = /^(\d+(?:\.\d+)?)([smhd])$/.exec(v)
  if (age) return now - Number(age[1]) * AGE_UNITS[age[2]!]!
  if (/^\d{10,16}$/.test(v)) return Number(v)
  const t = Date.parse(v)
  if (Number.isNaN(t)) throw new ValidationError(field, `${JSON.stringify(v)} is not a time: use an ISO date (2026-01-31T12:00:00Z), ms since epoch, or an age like 15m, 2h, 7d`)
  return t
}

/** Builds a filter from string fields (query parameters, flags, a JSON body); unknown keys are errors. */
export function parseFilter (src: Record<string, unknown>, now = Date.now()): DlqFilter {
  const f: DlqFilter = {}
  for (const [k, raw] of Object.entries(src)) {
    if (raw === undefined || raw === null || raw === '') continue
    const v = Array.isArray(raw) ? raw.map(String).join(',') : String(raw)
    switch (k) {
      case 'device': f.device = v; break
      case 'reason': f.reason = v; break
      case 'kind':
        if (!(KINDS as readonly string[]).includes(v)) throw new ValidationError('kind', `must be one of ${KINDS.join(', ')}`)
        f.kind = v
        break
      case 'since': f.since = parseTime('since', v, now); break
      case 'until': f.until = parseTime('until', v, now); break
      case 'id': {
        const ids = v.split(',').map((x) => x.trim()).filter(Boolean).map(Number)
        if (ids.some((x) => !Number.isSafeInteger(x) || x < 0)) throw new ValidationError('id', 'must be record ids (unsigned integers), comma-separated')
        f.ids = ids
        break
      }
      default: throw new ValidationError(k, `unknown filter; use ${FILTER_KEYS.join(', ')}`)
    }
  }
  return f
}

export function isEmptyFilter (f: DlqFilter): boolean {
  return f.device === undefined && f.reason === undefined && f.kind === undefined && f.since === undefined && f.until === undefined && f.ids === undefined
}
