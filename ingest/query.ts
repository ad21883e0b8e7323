/**
 * Query API (docs/design.md section 7), JSON:
 *   GET /v1/devices/{deviceId}/readings?boot=&fromSeq=&limit=&cursor=&gateway=
 *   GET /v1/stats
 *   GET /v1/conflicts?device=&limit=&cursor=   natural-key conflicts (sinks/types.ts ConflictRecord)
 *
 * All need a read token and are scoped to its fleet (read-auth.ts). A page holds at most
 * `limit` readings (a larger `limit` is capped at QUERY_LIMITS.maxLimit) and stops at about
 * `--max-response-bytes` of readings; `next` continues either way. Before the caps,
 * `limit=10000` built ~160 MiB of JSON in memory.
 *
 * `boot` values: digits -> numeric boot; `null` -> readings without a boot; `"..."` (JSON
 * string, quotes included) -> that text boot (use it for text boots made of digits or the
 * text "null"); anything else -> text boot as given.
 */
import { isValidDeviceId, READING_LIMITS, type Boot } from '../protocol/index.ts'
import { HttpError } from './errors.ts'
import type { ConflictQuery, DeviceQuery, DevicePage, Sink, Stats } from './sinks/types.ts'

export const QUERY_LIMITS = { defaultLimit: 1000, maxLimit: 1000 } as const

const READINGS_RE = /^\/v1\/devices\/([^/]+)\/readings$/

/** The device id when `pathname` is a readings URL, else null. */
export function matchReadings (pathname: string): string | null {
  const m = READINGS_RE.exec(pathname)
  if (!m) return null
  try { return decodeURIComponent(m[1]!) } catch { return '\u0000' }
}

const bad = (field: string, message: string): HttpError => new HttpError(400, 'invalid_query', `${field}: ${message}`, { field })

export function parseBoot (raw: string): Boot | null {
  if (raw === 'null') return null
  if (/^\d+$/.test(raw)) {
    const n = Number(raw)
    if (!Number.isSafeInteger(n)) throw bad('boot', 'numeric boot must be below 2^53')
    return n
  }
  let text = raw
  if (raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"')) {
    try { text = JSON.parse(raw) as string } catch { throw bad('boot', 'quoted boot must be a JSON string') }
  }
  if (Buffer.byteLength(text) > READING_LIMITS.maxBootBytes) throw bad('boot', `text boot longer than ${READING_LIMITS.maxBootBytes} bytes`)
  return text
}

/** A device query as asked; `gateway` (`?gateway=`) is resolved against the fleet by the caller. */
export type ParsedDeviceQuery = DeviceQuery & { gateway?: string }

export function parseDeviceQuery (device: string, params: URLSearchParams): ParsedDeviceQuery {
  if (!isValidDeviceId(device)) throw bad('deviceId', 'must match ^[A-Za-z0-9._-]{1,64}$')
  for (const k of params.keys()) {
    if (k !== 'boot' && k !== 'fromSeq' && k !== 'limit' && k !== 'cursor' && k !== 'gateway') throw bad(k, 'unknown parameter (boot, fromSeq, limit, cursor, gateway)')
  }
  const q: ParsedDeviceQuery = { device, limit: QUERY_LIMITS.defaultLimit }
  const boot = params.get('boot')
  if (boot !== null) q.boot = parseBoot(boot)
  const fromSeq = params.get('fromSeq')
  if (fromSeq !== null) {
    if (!/^\d+$/.test(fromSeq) || !Number.isSafeInteger(Number(fromSeq))) throw bad('fromSeq', 'must be an unsigned integer below 2^53')
    if (boot === null) throw bad('fromSeq', 'needs boot (seqs restart with every boot)')
    q.fromSeq = Number(fromSeq)
  }
  const limit = params.get('limit')
  if (limit !== null) {
    const n = Number(limit)
    if (!/^\d+$/.test(limit) || n < 1) throw bad('limit', `must be a positive integer (pages hold at most ${QUERY_LIMITS.maxLimit})`)
    q.limit = Math.min(n, QUERY_LIMITS.maxLimit)
  }
  const cursor = params.get('cursor')
  if (cursor !== null && cursor !== '') q.cursor = cursor
  const gateway = params.get('gateway')
  if (gateway !== null) {
    if (gateway === '' || gateway.length > 64) throw bad('gateway', 'must be a gateway id (1..64 characters)')
    q.gateway = gateway
  }
  return q
}

function parseLimit (params: URLSearchParams): number {
  const limit = params.get('limit')
  if (limit === null) return QUERY_LIMITS.defaultLimit
  const n = Number(limit)
  if (!/^\d+$/.test(limit) || n < 1) throw bad('limit', `must be a positive integer (pages hold at most ${QUERY_LIMITS.maxLimit})`)
  return Math.min(n, QUERY_LIMITS.maxLimit)
}

/** `GET /v1/conflicts` parameters; the fleet comes from the read token, not the query. */
export function parseConflictQuery (params: URLSearchParams): ConflictQuery {
  for (const k of params.keys()) if (k !== 'device' && k !== 'limit' && k !== 'cursor') throw bad(k, 'unknown parameter (device, limit, cursor)')
  const q: ConflictQuery = { limit: parseLimit(params) }
  const device = params.get('device')
  if (device !== null) {
    if (!isValidDeviceId(device)) throw bad('device', 'must match ^[A-Za-z0-9._-]{1,64}$')
    q.device = device
  }
  const cursor = params.get('cursor')
  if (cursor !== null && cursor !== '') q.cursor = cursor
  return q
}

export async function queryReadings (sink: Sink, q: DeviceQuery): Promise<{ device: string } & DevicePage> {
  const page = await sink.queryDevice({ ...q, limit: Math.min(q.limit, QUERY_LIMITS.maxLimit) })
  return { device: q.device, readings: page.readings, next: page.next }
}

export function queryStats (sink: Sink): Promise<Stats> {
  return sink.stats()
}
