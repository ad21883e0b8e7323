/**
 * The leveldb sink's conflicts record, read side: the c! entries (leveldb-keys.ts
 * `conflictKey`, written by the apply step of leveldb.ts in the same batch as the request
 * that met the conflict), in key order: fleet, device, boot, seq, then the conflicting
 * copy's transport key. A fleet's query walks its own prefix; a query of every fleet for one
 * device walks them all and skips the other devices' entries, at most QUERY_SCAN_LIMIT a
 * page (conflicts are rare: a page is normally one short range). Guarded by
 * test/integration/sink-contract.ts (the conflict cases).
 */
import type { Level } from 'level'
import { ValidationError } from '../../protocol/index.ts'
import { hex, prefixEnd } from './leveldb-keys.ts'
import { scanPage } from './leveldb-query.ts'
import type { ConflictPage, ConflictQuery, ConflictRecord } from './types.ts'

const ALL = 'c!'

function decodeCursor (cursor: string, prefix: string): string {
  if (!/^[A-Za-z0-9_-]{1,2048}$/.test(cursor)) throw new ValidationError('cursor', 'not a cursor returned by this API')
  const key = Buffer.from(cursor, 'base64url').toString('utf8')
  if (!key.startsWith(prefix)) throw new ValidationError('cursor', 'not a cursor of this query')
  return key
}

export async function queryConflicts (db: Level<string, string>, q: ConflictQuery): Promise<ConflictPage> {
  const prefix = q.fleet === undefined ? ALL : `c!${hex(q.fleet)}!${q.device === undefined ? '' : `${q.device}!`}`
  const range: { gt?: string, gte?: string, lt: string } = { gte: prefix, lt: prefixEnd(prefix) }
  if (q.cursor !== undefined) { delete range.gte; range.gt = decodeCursor(q.cursor, prefix) }
  // every fleet, one device: the device is the third field
  const device = q.fleet === undefined ? q.device : undefined
  const conflicts: ConflictRecord[] = []
  const after = await scanPage(db, range, q.limit, (k) => device !== undefined && k.split('!', 3)[2] !== device, (_k, v) => {
    if (conflicts.length >= q.limit) return false
    conflicts.push(JSON.parse(v) as ConflictRecord)
    return true
  })
  const next = after === null ? null : Buffer.from(after, 'utf8').toString('base64url')
  return { conflicts, next }
}
