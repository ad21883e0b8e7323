/**
 * The leveldb sink's read path (docs/ingest.md): the readings of one device, walked in key
 * order (leveldb-keys.ts: device, boot, seq) with an iterator that stops at `limit`
 * readings, `maxBytes` of values, or QUERY_SCAN_LIMIT keys skipped for other gateways
 * (fleets), returning a cursor to go on from. Reads only what is durable. Guarded by
 * test/integration/sink-contract.ts and test/unit/ingest-cursor.test.ts.
 */
import type { Level } from 'level'
import { bootPrefix, decodeCursor, decodeReading, devicePrefix, encodeCursor, gatewayHexOfKey, hex, prefixEnd, seqKey } from './leveldb-keys.ts'
import type { DevicePage, DeviceQuery, StoredReading } from './types.ts'

/** Keys a query may skip (other fleets' readings) before it returns a short page with `next`. */
export const QUERY_SCAN_LIMIT = 20_000

export async function queryDevice (db: Level<string, string>, q: DeviceQuery): Promise<DevicePage> {
  const range: { gt?: string, gte?: string, lt: string } = { lt: '' }
  const prefix = q.boot === undefined ? devicePrefix(q.device) : bootPrefix(q.device, q.boot)
  range.lt = prefixEnd(prefix)
  range.gte = q.fromSeq === undefined ? prefix : prefix + seqKey(q.fromSeq, 0)
  if (q.cursor !== undefined) {
    const after = decodeCursor(q.cursor, q.device)
    if (after >= range.gte) { delete range.gte; range.gt = after }
  }
  const only = q.gateways === undefined ? null : new Set(q.gateways.map(hex))
  const maxBytes = q.maxBytes ?? Infinity
  const readings: StoredReading[] = []
  let bytes = 0
  const after = await scanPage(db, range, q.limit, (k) => only !== null && !only.has(gatewayHexOfKey(k)), (k, v) => {
    if (readings.length >= q.limit || (readings.length > 0 && bytes + v.length > maxBytes)) return false
    readings.push(decodeReading(k, v))
    bytes += v.length
    return true
  })
  const next = after === null ? null : encodeCursor(after)
  return { readings, next }
}

/**
 * One page of a key-ordered walk of `range`: keys `skip` says are not the caller's (another
 * fleet's) count toward QUERY_SCAN_LIMIT, `take` takes a row or says the page is full. Returns
 * the key to go on after (the last one taken or skipped), or null when the range is done.
 */
export async function scanPage (db: Level<string, string>, range: { gt?: string, gte?: string, lt: string }, limit: number,
  skip: (k: string) => boolean, take: (k: string, v: string) => boolean): Promise<string | null> {
  let skipped = 0
  let last: string | null = null
  const it = db.iterator(range)
  try {
    for (;;) {
      const rows = await it.nextv(Math.min(limit + 1, 1000))
      if (rows.length === 0) return null
      for (const [k, v] of rows) {
        if (skip(k)) {
          last = k
          if (++skipped >= QUERY_SCAN_LIMIT) return k
          continue
        }
        if (!take(k, v)) return last
        last = k
      }
    }
  } finally {
    await it.close()
  }
}
