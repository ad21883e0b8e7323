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
  let skipped = 0
  let last: string | null = null
  let next: string | null = null
  const it = db.iterator(range)
  try {
    for (;;) {
      const rows = await it.nextv(Math.min(q.limit + 1, 1000))
      if (rows.length === 0) break
      for (const [k, v] of rows) {
        if (only !== null && !only.has(gatewayHexOfKey(k))) {
          last = k
          if (++skipped >= QUERY_SCAN_LIMIT) { next = encodeCursor(k); break }
          continue
        }
        if (readings.length >= q.limit || (readings.length > 0 && bytes + v.length > maxBytes)) { next = encodeCursor(last!); break }
        readings.push(decodeReading(k, v))
        bytes += v.length
        last = k
      }
      if (next !== null) break
    }
  } finally {
    await it.close()
  }
  return { readings, next }
}
