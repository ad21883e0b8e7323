/**
 * Query path of the postgres sink: the query API's readings of one device in (boot, seq)
 * order with keyset pagination, /v1/stats from the counters, and the natural-key conflicts
 * (`queryConflicts`, keyset pagination on ingest_conflicts_order).
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
import { COUNT_KINDS, zeroCounts, type ConflictPage, type ConflictQuery, type Counts, type DevicePage, type DeviceQuery, type Stats, type StoredReading } from './types.ts'

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
  const { rows } = await c.query<Record<keyof Counts, string> & { gateway: string }>(
    `SELECT gateway, sum(stored) AS stored, sum(duplicates) AS duplicates, sum(rejected) AS rejected, sum(evicted) AS evicted, sum(conflicts) AS conflicts
     FROM ingest_counters GROUP BY gateway ORDER BY gateway`)
  const total: Counts = zeroCounts()
  const gateways: Record<string, Counts> = {}
  for (const r of rows) {
    const g = zeroCounts()
    for (const k of COUNT_KINDS) { g[k] = Number(r[k]); total[k] += g[k] }
    gateways[r.gateway] = g
  }
  return { ...total, gateways }
}

const CONFLICT_ORDER = 'fleet, device, boot_key, seq, gateway, epoch, p, s'

type ConflictRow = {
  fleet: string, device: string, boot: Boot | null, boot_key: string, seq: string, gateway: string, epoch: string, p: number, s: string, ts: string | null, rx: string, values: Values,
  stored_gateway: string | null, stored_epoch: string | null, stored_p: number | null, stored_s: string | null, stored_ts: string | null, stored_rx: string | null, stored_values: Values | null,
  recorded_at: string
}

type ConflictCursor = [fleet: string, device: string, bootKey: string, seq: string, gateway: string, epoch: string, p: number, s: string]

function decodeConflictCursor (cursor: string, q: ConflictQuery): ConflictCursor {
  const bad = (why: string): ValidationError => new ValidationError('cursor', why)
  if (!/^[A-Za-z0-9_-]{1,4096}$/.test(cursor)) throw bad('not a cursor returned by this API')
  let t: unknown
  try { t = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) } catch { throw bad('not a cursor returned by this API') }
  const ok = Array.isArray(t) && t.length === 8 && [0, 1, 2, 4, 5].every((i) => typeof t[i] === 'string') && /^\d{1,20}$/.test(String(t[3])) &&
    Number.isInteger(t[6]) && /^\d{1,20}$/.test(String(t[7]))
  if (!ok) throw bad('not a cursor returned by this API')
  const c = t as ConflictCursor
  if ((q.fleet !== undefined && c[0] !== q.fleet) || (q.device !== undefined && c[1] !== q.device)) throw bad('not a cursor of this query')
  return c
}

/** The natural-key conflicts (ingest_conflicts), ordered as the leveldb sink orders them, with keyset pagination. */
export async function queryConflicts (c: pg.ClientBase, q: ConflictQuery): Promise<ConflictPage> {
  const params: unknown[] = []
  const where: string[] = []
  if (q.fleet !== undefined) { params.push(q.fleet); where.push(`fleet = $${params.length}`) }
  if (q.device !== undefined) { params.push(q.device); where.push(`device = $${params.length}`) }
  if (q.cursor !== undefined) {
    const k = decodeConflictCursor(q.cursor, q)
    const i = params.length
    params.push(...k)
    where.push(`(${CONFLICT_ORDER}) > ($${i + 1}, $${i + 2}, $${i + 3}, $${i + 4}::bigint, $${i + 5}, $${i + 6}, $${i + 7}::int, $${i + 8}::bigint)`)
  }
  params.push(q.limit + 1)
  const { rows } = await c.query<ConflictRow>(
    `SELECT * FROM ingest_conflicts ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY ${CONFLICT_ORDER} LIMIT $${params.length}`, params)
  const page = rows.slice(0, q.limit)
  const last = page[page.length - 1]
  const next = rows.length > q.limit && last !== undefined
    ? Buffer.from(JSON.stringify([last.fleet, last.device, last.boot_key, last.seq, last.gateway, last.epoch, last.p, last.s] satisfies ConflictCursor), 'utf8').toString('base64url')
    : null
  return {
    conflicts: page.map((r) => ({
      fleet: r.fleet,
      device: r.device,
      boot: r.boot,
      seq: Number(r.seq),
      stored: r.stored_gateway === null
        ? null
        : { gateway: r.stored_gateway, epoch: r.stored_epoch!, p: r.stored_p!, s: Number(r.stored_s), ts: num(r.stored_ts), rx: Number(r.stored_rx), values: r.stored_values! },
      conflicting: { gateway: r.gateway, epoch: r.epoch, p: r.p, s: Number(r.s), ts: num(r.ts), rx: Number(r.rx), values: r.values },
      recordedAt: Number(r.recorded_at)
    })),
    next
  }
}
