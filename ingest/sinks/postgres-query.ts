/**
 * Query path of the postgres sink: the query API's readings of one device in (boot, seq)
 * order with keyset pagination, and /v1/stats from the counters.
 *
 * Order: (boot_key, pos, gateway, epoch, p, s), the columns of the readings_device_order
 * index after `device`, so each page is one index range scan whatever its depth. The
 * cursor is that tuple of the page's last row (base64url JSON), checked against the
 * device asked for, so a cursor cannot read another device's range.
 */
import type pg from 'pg'
import { ValidationError, type Boot, type Values } from '../../protocol/index.ts'
import { bootKey } from './leveldb-keys.ts'
import { zeroCounts, type Counts, type DevicePage, type DeviceQuery, type Stats, type StoredReading } from './types.ts'

type Row = {
  gateway: string, epoch: string, p: number, s: string, seq: string | null, boot: Boot | null,
  ts: string | null, rx: string, values: Values, boot_key: string, pos: string
}

type CursorTuple = [device: string, bootKey: string, pos: string, gateway: string, epoch: string, p: number, s: string]

function encodeCursor (device: string, r: Row): string {
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

export async function queryDevice (c: pg.ClientBase, q: DeviceQuery): Promise<DevicePage> {
  const params: unknown[] = [q.device]
  const where = ['device = $1']
  if (q.boot !== undefined) { params.push(bootKey(q.boot)); where.push(`boot_key = $${params.length}`) }
  if (q.fromSeq !== undefined) { params.push(q.fromSeq); where.push(`pos >= $${params.length}`) }
  if (q.cursor !== undefined) {
    const [, bk, pos, gw, ep, p, s] = decodeCursor(q.cursor, q.device)
    const i = params.length
    params.push(bk, pos, gw, ep, p, s)
    where.push(`(boot_key, pos, gateway, epoch, p, s) > ($${i + 1}, $${i + 2}::bigint, $${i + 3}, $${i + 4}, $${i + 5}::int, $${i + 6}::bigint)`)
  }
  params.push(q.limit + 1)
  const { rows } = await c.query<Row>(
    `SELECT gateway, epoch, p, s, seq, boot, ts, rx, values, boot_key, pos FROM readings WHERE ${where.join(' AND ')}
     ORDER BY boot_key, pos, gateway, epoch, p, s LIMIT $${params.length}`, params)
  const page = rows.slice(0, q.limit)
  const readings: StoredReading[] = page.map((r) => ({
    gateway: r.gateway, epoch: r.epoch, p: r.p, s: Number(r.s), seq: num(r.seq), boot: r.boot, ts: num(r.ts), rx: Number(r.rx), values: r.values
  }))
  return { readings, next: rows.length > q.limit ? encodeCursor(q.device, page[page.length - 1]!) : null }
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
