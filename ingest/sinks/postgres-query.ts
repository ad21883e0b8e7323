/**
 * Query path of the postgres sink: the query API's readings of one device in (boot, seq)
 * order with keyset pagination, and /v1/stats from the counters.
 *
 * Order: (boot_key, pos, gateway, epoch, p, s), the columns of the readings_device_order
 * index after `device`, so each page is one index range scan whatever its depth. The
 * cursor is that tuple of the page's last row (base64url JSON), checked against the
 * device asked for, so a cursor cannot read another device's range.
 *
 * Fleets: `gateways` filters the range to those gateways' readings. So that a page's work
 * stays bounded when the device's range is mostly other gateways' readings, a page looks
 * at most `scanLimit` rows of the range: it first finds the key of the scanLimit-th row
 * (an index-order OFFSET on readings_device_order) and filters only up to it; when the
 * page ends there, `next` continues after that key, so the page may be short or empty
 * with a non-null `next` (types.ts DeviceQuery).
 * maxBytes: the page stops before the reading that would take the readings' JSON size
 * past it (at least one reading a page); `next` continues after the last one returned.
 */
import type pg from 'pg'
import { ValidationError, type Boot, type Values } from '../../protocol/index.ts'
import { bootKey } from './leveldb-keys.ts'
import { zeroCounts, type Counts, type DevicePage, type DeviceQuery, type Stats, type StoredReading } from './types.ts'

type Row = {
  gateway: string, epoch: string, p: number, s: string, seq: string | null, boot: Boot | null,
  ts: string | null, rx: string, values: Values, boot_key: string, pos: string
}

type KeyRow = Pick<Row, 'boot_key' | 'pos' | 'gateway' | 'epoch' | 'p' | 's'>

type CursorTuple = [device: string, bootKey: string, pos: string, gateway: string, epoch: string, p: number, s: string]

function encodeCursor (device: string, r: KeyRow): string {
  const t: CursorTuple = [device, r.boot_key, r.pos, r.gateway, r.epoch, r.p, r.s]
  return Buffer.from(JSON.stringify(t), 'utf8').toString('base64url')
}

function decodeCursor (cursor: string, device: string): CursorTuple {
  const bad = (why: string): ValidationError => new ValidationError('cursor', why)
  if (!/^[A-Za-z0-9_-]{1,2048}$/.test(cursor)) throw bad('not a cursor returned by this API')
  let t: unknown
  try { t = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) } catch { throw bad('not a cursor returned by this API') }
  const ok = Array.isArray(t) && t.length === 7 && typeof t[0] === 'string' && typeof t[1] === 'string' && /^\d{1,20}$/.test(String(t[2])) &&
    typeof t[3] === 'string' && typeof t[4] === 'string' && Number.isInteger(t[5]) && /^\d{1,20}$/.test(String(t[6]))
  if (!ok) throw bad('not a cursor returned by this API')
  const tuple = t as CursorTuple
  if (tuple[0] !== device) throw bad('not a cursor for this device')
  return tuple
}

const num = (v: string | null): number | null => v === null ? null : Number(v)

/** Rows of a device's range one filtered page may pass over (as the leveldb sink's QUERY_SCAN_LIMIT). */
export const QUERY_SCAN_ROWS = 20_000

const ORDER = 'boot_key, pos, gateway, epoch, p, s'

function keyAfter (params: unknown[], op: '>' | '<=', k: { boot_key: string, pos: string, gateway: string, epoch: string, p: number, s: string }): string {
  const i = params.length
  params.push(k.boot_key, k.pos, k.gateway, k.epoch, k.p, k.s)
  return `(${ORDER}) ${op} ($${i + 1}, $${i + 2}::bigint, $${i + 3}, $${i + 4}, $${i + 5}::int, $${i + 6}::bigint)`
}

export async function queryDevice (c: pg.ClientBase, q: DeviceQuery, scanLimit = QUERY_SCAN_ROWS): Promise<DevicePage> {
  if (q.gateways !== undefined && q.gateways.length === 0) return { readings: [], next: null }
  const params: unknown[] = [q.device]
  const where = ['device = $1']
  if (q.boot !== undefined) { params.push(bootKey(q.boot)); where.push(`boot_key = $${params.length}`) }
  if (q.fromSeq !== undefined) { params.push(q.fromSeq); where.push(`pos >= $${params.length}`) }
  if (q.cursor !== undefined) {
    const [, bootKeyC, pos, gateway, epoch, p, s] = decodeCursor(q.cursor, q.device)
    where.push(keyAfter(params, '>', { boot_key: bootKeyC, pos, gateway, epoch, p, s }))
  }
  let bound: KeyRow | null = null
  if (q.gateways !== undefined) {
    const { rows } = await c.query<KeyRow>(
      `SELECT ${ORDER} FROM readings WHERE ${where.join(' AND ')} ORDER BY ${ORDER} OFFSET ${scanLimit - 1} LIMIT 1`, params)
    bound = rows[0] ?? null
    if (bound !== null) where.push(keyAfter(params, '<=', bound))
    params.push(q.gateways)
    where.push(`gateway = ANY($${params.length}::text[])`)
  }
  params.push(q.limit + 1)
  const { rows } = await c.query<Row>(
    `SELECT gateway, epoch, p, s, seq, boot, ts, rx, values, boot_key, pos FROM readings WHERE ${where.join(' AND ')}
     ORDER BY ${ORDER} LIMIT $${params.length}`, params)
  const maxBytes = q.maxBytes ?? Infinity
  const readings: StoredReading[] = []
  let bytes = 0
  let next: string | null = null
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!
    const reading: StoredReading = {
      gateway: r.gateway, epoch: r.epoch, p: r.p, s: Number(r.s), seq: num(r.seq), boot: r.boot, ts: num(r.ts), rx: Number(r.rx), values: r.values
    }
    const size = maxBytes === Infinity ? 0 : JSON.stringify(reading).length
    if (readings.length >= q.limit || (readings.length > 0 && bytes + size > maxBytes)) { next = encodeCursor(q.device, rows[i - 1]!); break }
    readings.push(reading)
    bytes += size
  }
  // The filtered scan stopped at `bound`: the rest of the range is for the next page.
  if (next === null && bound !== null) next = encodeCursor(q.device, bound)
  return { readings, next }
}

export async function queryStats (c: pg.ClientBase): Promise<Stats> {
  const { rows } = await c.query<{ gateway: string, stored: string, duplicates: string, rejected: string, evicted: string }>(
    `SELECT gateway, sum(stored) AS stored, sum(duplicates) AS duplicates, sum(rejected) AS rejected, sum(evicted) AS evicted
     FROM ingest_counters GROUP BY gateway ORDER BY gateway`)
  const total: Counts = zeroCounts()
  const gateways: Record<string, Counts> = {}
  for (const r of rows) {
    const g: Counts = { stored: Number(r.stored), duplicates: Number(r.duplicates), rejected: Number(r.rejected), evicted: Number(r.evicted) }
    gateways[r.gateway] = g
    for (const k of ['stored', 'duplicates', 'rejected', 'evicted'] as const) total[k] += g[k]
  }
  return { ...total, gateways }
}
