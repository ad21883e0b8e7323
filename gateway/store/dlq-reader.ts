/**
 * Reads the dead-letter records (keys.ts: `x!NNNNNNNNNNNNNNNN`, a CBOR map per record) for
 * the dlq tools (dead-letters.ts maps where dead letters live). Read-only: records are removed only through the store's writer
 * (`Store.dropDeadLetters`), which keeps the `m!dlq` counter in the same atomic batch.
 *
 * Works on a live store's LevelDB handle and on one opened directly on a stopped
 * gateway's data dir (`openDataDir`). Iterates in id order (oldest first) with a
 * streaming iterator: memory does not grow with the dead-letter store.
 */
import { Level } from 'level'
import { decodeUntrusted } from '../../protocol/index.ts'
import { K } from './keys.ts'
import { StoreOpenError } from './open-error.ts'

export type DeadLetterKind = 'payload' | 'item' | 'too-old'

/** One dead-letter record as the tools see it: the stored fields plus its id and device. */
export type DeadLetter = {
  id: number
  kind: DeadLetterKind | string
  reason: string
  at: number
  /** the publishing device (payload, too-old) or the item's device (item); null if unknown */
  device: string | null
  topic?: string
  p?: number
  s?: number
  raw: Buffer
}

export type DlqFilter = {
  /** exact id, or a pattern with `*` wildcards */
  device?: string
  /** case-insensitive substring of the reason */
  reason?: string
  kind?: string
  /** ms since epoch, inclusive */
  since?: number
  /** ms since epoch, exclusive */
  until?: number
  ids?: number[]
}

type Db = Level<string, Buffer>

/** A stored field as text, without calling anything on it (a damaged record may hold any value). */
const text = (v: unknown): string =>
  typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint' ? String(v) : v == null ? '' : `(${Array.isArray(v) ? 'array' : typeof v})`

/** Decodes one stored record; unreadable ones are still listed (kind `unreadable`) so they can be purged. */
export function decodeDeadLetter (id: number, v: Buffer): DeadLetter {
  let m: Record<string, unknown>
  try {
    m = decodeUntrusted(v, { maxDepth: 3 }) as Record<string, unknown>
    if (m === null || typeof m !== 'object') throw new Error('not a map')
  } catch (err) {
    return { id, kind: 'unreadable', reason: `record unreadable: ${(err as Error).message}`, at: 0, device: null, raw: v }
  }
  const raw = m.raw instanceof Uint8Array ? Buffer.from(m.raw) : Buffer.alloc(0)
  let device = typeof m.device === 'string' ? m.device : null
  if (device === null && m.kind === 'item') {
    try {
      const item = decodeUntrusted(raw, { maxDepth: 4 })
      if (Array.isArray(item) && typeof item[2] === 'string') device = item[2]
    } catch {}
  }
  return {
    id,
    kind: text(m.kind),
    reason: text(m.reason),
    at: typeof m.at === 'number' ? m.at : typeof m.at === 'bigint' ? Number(m.at) : 0,
    device,
    ...(typeof m.topic === 'string' ? { topic: m.topic } : {}),
    ...(typeof m.p === 'number' ? { p: m.p } : {}),
    ...(typeof m.s === 'number' ? { s: m.s } : {}),
    raw
  }
}

function globToRegExp (pattern: string): RegExp {
  return new RegExp('^' + pattern.split('*').map((x) => x.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$')
}

/** A predicate for `filter`, compiled once. */
export function matcher (filter: DlqFilter): (r: DeadLetter) => boolean {
  const dev = filter.device === undefined ? null : filter.device.includes('*') ? globToRegExp(filter.device) : filter.device
  const reason = filter.reason?.toLowerCase()
  const ids = filter.ids ? new Set(filter.ids) : null
  return (r) => {
    if (ids && !ids.has(r.id)) return false
    if (dev !== null && (r.device === null || (typeof dev === 'string' ? r.device !== dev : !dev.test(r.device)))) return false
    if (filter.kind !== undefined && r.kind !== filter.kind) return false
    if (reason !== undefined && !r.reason.toLowerCase().includes(reason)) return false
    if (filter.since !== undefined && r.at < filter.since) return false
    if (filter.until !== undefined && r.at >= filter.until) return false
    return true
  }
}

/**
 * Records matching `filter`, at most `limit`: oldest first with ids above `afterId`, or with
 * `newest`, newest first with ids below `afterId`.
 */
export async function * scanDeadLetters (db: Db, filter: DlqFilter = {}, opts: { afterId?: number, limit?: number, newest?: boolean } = {}): AsyncGenerator<DeadLetter> {
  const match = matcher(filter)
  const limit = opts.limit ?? Infinity
  let n = 0
  if (limit <= 0) return
  const all = K.all('dlq')
  const range = opts.afterId === undefined
    ? all
    : opts.newest ? { gt: all.gt, lt: K.dlq(opts.afterId) } : { gt: K.dlq(opts.afterId), lt: all.lt }
  for await (const [k, v] of db.iterator({ ...range, reverse: opts.newest === true })) {
    const r = decodeDeadLetter(K.idOf(k), v)
    if (!match(r)) continue
    yield r
    if (++n >= limit) return
  }
}

export async function readDeadLetter (db: Db, id: number): Promise<DeadLetter | null> {
  const v = await db.get(K.dlq(id))
  return v === undefined ? null : decodeDeadLetter(id, v)
}

/** Reason counts over the first `max` records (a bounded scan), and whether it saw them all. */
export async function reasonSummary (db: Db, max = 10_000): Promise<{ scanned: number, complete: boolean, byKind: Record<string, number>, byReason: Record<string, number> }> {
  const byKind: Record<string, number> = {}
  const byReason: Record<string, number> = {}
  let scanned = 0
  for await (const v of db.values({ ...K.all('dlq'), limit: max + 1 })) {
    if (scanned === max) return { scanned, complete: false, byKind, byReason }
    scanned++
    const r = decodeDeadLetter(0, v)
    byKind[r.kind] = (byKind[r.kind] ?? 0) + 1
    const key = r.reason.slice(0, 120)
    if (byReason[key] !== undefined || Object.keys(byReason).length < 50) byReason[key] = (byReason[key] ?? 0) + 1
    else byReason['(other reasons)'] = (byReason['(other reasons)'] ?? 0) + 1
  }
  return { scanned, complete: true, byKind, byReason }
}

/** The record count kept in `m!dlq` (0 when absent or unreadable). */
export async function readDlqCount (db: Db): Promise<number> {
  const v = await db.get(K.dlqMeta)
  if (v === undefined) return 0
  try {
    const d = decodeUntrusted(v, { maxDepth: 2 })
    return Array.isArray(d) && Number.isSafeInteger(d[1]) ? d[1] as number : 0
  } catch { return 0 }
}

/** Thrown by `openDataDir` when a running gateway holds the store's lock (`gateway dlq` exits 3). */
export class StoreLockedError extends StoreOpenError {
  static override readonly code = 'EDGE_ERR_STORE_LOCKED'
  override name = 'StoreLockedError'
  constructor (dataDir: string, options: { cause?: unknown } = {}) {
    super(dataDir, 'locked', `the store at ${dataDir} is locked: a gateway is running on it. Stop it, or use its admin API (gateway dlq ... --admin http://127.0.0.1:8081)`, options.cause)
  }
}

/** Opens a stopped gateway's LevelDB directly; refuses clearly when a gateway holds it. */
export async function openDataDir (dataDir: string): Promise<{ db: Db, partitions: number }> {
  const db = new Level<string, Buffer>(dataDir, { keyEncoding: 'utf8', valueEncoding: 'buffer', createIfMissing: false })
  try {
    await db.open()
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') throw new StoreLockedError(dataDir, { cause: err })
    throw new Error(`cannot open the store at ${dataDir}: ${(cause as Error | undefined)?.message ?? (err as Error).message}`, { cause: err })
  }
  const partitions = Number((await db.get(K.partitions))?.toString())
  if (!Number.isInteger(partitions) || partitions < 1) {
    await db.close()
    throw new Error(`${dataDir} is not a gateway store (no partitions recorded)`)
  }
  return { db, partitions }
}
