/**
 * Fast path of the postgres sink's write (postgres-write.ts): a batch that needs no dedup
 * decision is written with `COPY readings FROM STDIN`, in one simple-protocol Query message
 * that is one implicit transaction:
 *
 *   SELECT <fails when an item is below its floor, or the first item is stored already>;
 *   COPY readings (...) FROM STDIN;            -- the rows follow as CopyData
 *   INSERT INTO ingest_floors ... ON CONFLICT DO NOTHING; UPDATE ingest_floors ...;
 *   INSERT INTO ingest_counters ... ON CONFLICT DO UPDATE ...
 *
 * (copySql below). It commits at the end of the message (synchronous_commit on, so durable
 * before the ReadyForQuery the answer waits for), or rolls back entirely at the first
 * error. COPY
 * inserts rows in bulk (heap multi-insert) with no ON CONFLICT speculative insertion: per
 * row no arbiter pre-check of the two unique keys and no confirm record, which is most of
 * what separated the sink from a plain COPY on the server (bench/postgres.ts).
 *
 * COPY cannot skip a row, so every case that needs a decision goes to the INSERT ... ON
 * CONFLICT statement instead (the slow path, unchanged): the batch repeats a transport or
 * natural key, reports evicted ranges, or has a time outside what the text form below
 * writes; at run time, an item below its floor or a first item stored already (the guard
 * statement fails), or any key already stored or being stored by a concurrent transaction
 * (COPY fails with a unique violation after waiting for it). The failed message stored nothing, so the slow path
 * starts from the same state: a reading is still stored once, and each item's answer
 * (stored / duplicate / conflict) is the slow path's.
 */
import pg from 'pg'
import { bootKey } from './leveldb-keys.ts'
import { DEFAULT_FLEET, type PgRequest } from './types.ts'

/** The guard's error texts (SQLSTATE 22P02), so a failed fast path can tell them from other errors in logs and tests. */
export const BELOW_FLOOR = 'ingest fast path: an item is below its partition floor'
export const FIRST_STORED = 'ingest fast path: the first item is stored already'

/** 0001-01-01 .. 9999-12-31 in ms: Date#toISOString writes these as YYYY-MM-DDTHH:MM:SS.mmmZ, which PostgreSQL reads back exactly. */
const MIN_TIME = -62135596800000
const MAX_TIME = 253402300799999

const COPY_SPECIAL = /[\\\n\r\t]/
/** A text field of COPY's text format (backslash, newline, carriage return, tab escaped). */
const escCopy = (s: string): string => COPY_SPECIAL.test(s) ? s.replace(/[\\\n\r\t]/g, (m) => m === '\\' ? '\\\\' : m === '\n' ? '\\n' : m === '\r' ? '\\r' : '\\t') : s
/** JSON text as a COPY field: JSON.stringify escapes control characters itself, so only backslashes remain. */
const escJson = (json: string): string => json.includes('\\') ? json.replace(/\\/g, '\\\\') : json

/**
 * Whether the batch can take the fast path at all (checked before any database work): no
 * evicted ranges, no transport or natural key twice in the batch, times the text form holds.
 */
export function copyEligible (req: PgRequest): boolean {
  if (req.evicted.length > 0 || req.items.length === 0) return false
  const transport = new Set<string>()
  const natural = new Set<string>()
  for (const it of req.items) {
    const t = it.ts ?? it.rx
    if (!Number.isInteger(t) || t < MIN_TIME || t > MAX_TIME) return false
    const tk = `${it.p}:${it.s}`
    if (transport.has(tk)) return false
    transport.add(tk)
    if (it.seq !== null) {
      const nk = `${it.device}\u0000${bootKey(it.boot)}\u0000${it.seq}`
      if (natural.has(nk)) return false
      natural.add(nk)
    }
  }
  return true
}

const DAY_MS = 86_400_000
const pad2 = (n: number): string => n < 10 ? '0' + String(n) : String(n)
const pad3 = (n: number): string => n < 10 ? '00' + String(n) : n < 100 ? '0' + String(n) : String(n)

/**
 * `new Date(ms).toISOString()` for ms in [MIN_TIME, MAX_TIME], with the date part computed
 * once per day of a batch's run of times (a third of the cost; tests compare the two).
 */
export function isoTime (ms: number, cache: { day: number, prefix: string }): string {
  const day = Math.floor(ms / DAY_MS)
  if (day !== cache.day) { cache.day = day; cache.prefix = new Date(day * DAY_MS).toISOString().slice(0, 11) }
  let r = ms - day * DAY_MS
  const h = Math.floor(r / 3_600_000); r -= h * 3_600_000
  const m = Math.floor(r / 60_000); r -= m * 60_000
  const sec = Math.floor(r / 1000); r -= sec * 1000
  return cache.prefix + pad2(h) + ':' + pad2(m) + ':' + pad2(sec) + '.' + pad3(r) + 'Z'
}

/** The rows of `COPY readings (COPY_COLUMNS) FROM STDIN`, text format. */
export function copyData (req: PgRequest): string {
  const head = `\t${escCopy(req.gateway)}\t${escCopy(req.epoch)}\t`
  const fleet = escCopy(req.fleet ?? DEFAULT_FLEET)
  const days = { day: NaN, prefix: '' }
  let out = ''
  for (const it of req.items) {
    out += isoTime(it.ts ?? it.rx, days) + '\t' + String(it.rx) + '\t' + (it.ts === null ? '\\N' : String(it.ts)) + head +
      String(it.p) + '\t' + String(it.s) + '\t' + escCopy(it.device) + '\t' + (it.boot === null ? '\\N' : escJson(JSON.stringify(it.boot))) + '\t' +
      (it.seq === null ? '\\N' : String(it.seq)) + '\t' + escJson(JSON.stringify(it.values)) + '\t' + bootKey(it.boot) + '\t' + fleet + '\n'
  }
  return out
}

const COPY_COLUMNS = 'time, rx, ts, gateway, epoch, p, s, device, boot, seq, values, boot_key, fleet'

/** Lowest s per partition of the batch, and each partition's floor to record, sorted by p. */
function perPartition (req: PgRequest): { minS: [number, number][], floors: [number, number][] } {
  const min = new Map<number, number>()
  for (const it of req.items) min.set(it.p, Math.min(it.s, min.get(it.p) ?? Infinity))
  const fl = new Map<number, number>()
  for (const [p, s] of req.floors) fl.set(p, Math.max(s, fl.get(p) ?? 0))
  return { minS: [...min].sort((a, b) => a[0] - b[0]), floors: [...fl].sort((a, b) => a[0] - b[0]) }
}

/**
 * The Query message's text. Values are literals (the simple protocol has no parameters):
 * strings through pg.escapeLiteral, numbers from validated integers.
 *
 * The guard, first, fails (casting a non-constant text to int, which the planner cannot
 * evaluate ahead of the condition) when an item is below its partition's floor, and when
 * the first item's transport or natural key is stored already: a resent batch then costs
 * two index probes here instead of a COPY that would fail at the end of its rows (COPY
 * checks the unique keys as it flushes its buffered rows), and its data is never encoded
 * (copyData runs on the server's CopyInResponse).
 *
 * Floors: an insert of the partitions' rows that skips existing ones, then an UPDATE of
 * those whose floor rises; unlike an upsert, a floor that does not move takes no row lock,
 * so concurrent requests of one partition do not queue behind each other's COMMIT.
 */
export function copySql (req: PgRequest, shard: number): string {
  const g = pg.escapeLiteral(req.gateway)
  const e = pg.escapeLiteral(req.epoch)
  const fleet = pg.escapeLiteral(req.fleet ?? DEFAULT_FLEET)
  const { minS, floors } = perPartition(req)
  const int = (n: number): string => { if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${n}`); return String(n) }
  const first = req.items[0]!
  const d = pg.escapeLiteral(first.device)
  let guard = `SELECT (${pg.escapeLiteral(BELOW_FLOOR + ': p ')} || f.p)::int FROM ingest_floors f
  JOIN (VALUES ${minS.map(([p, s]) => `(${int(p)}, ${int(s)}::bigint)`).join(', ')}) AS b(p, s) ON f.p = b.p
  WHERE f.gateway = ${g} AND f.epoch = ${e} AND b.s < f.floor
UNION ALL SELECT (${pg.escapeLiteral(FIRST_STORED + ': s ')} || r.s)::int FROM readings r
  WHERE r.device = ${d} AND r.gateway = ${g} AND r.epoch = ${e} AND r.p = ${int(first.p)} AND r.s = ${int(first.s)}`
  if (first.seq !== null) {
    guard += `
UNION ALL SELECT (${pg.escapeLiteral(FIRST_STORED + ': seq ')} || r.seq)::int FROM readings r
  WHERE r.device = ${d} AND r.fleet = ${fleet} AND r.boot_key = ${pg.escapeLiteral(bootKey(first.boot))} AND r.seq = ${int(first.seq)}`
  }
  const fl = floors.length === 0
    ? ''
    : `INSERT INTO ingest_floors (gateway, epoch, p, floor) VALUES ${floors.map(([p, s]) => `(${g}, ${e}, ${int(p)}, ${int(s)})`).join(', ')} ON CONFLICT DO NOTHING;
UPDATE ingest_floors f SET floor = v.floor FROM (VALUES ${floors.map(([p, s]) => `(${int(p)}, ${int(s)}::bigint)`).join(', ')}) AS v(p, floor)
  WHERE f.gateway = ${g} AND f.epoch = ${e} AND f.p = v.p AND f.floor < v.floor;\n`
  const n = req.items.length
  const cnt = `INSERT INTO ingest_counters AS c (gateway, shard, stored, duplicates, rejected, evicted) VALUES (${g}, ${int(shard)}, ${int(n)}, 0, ${int(req.rejected)}, 0)
  ON CONFLICT (gateway, shard) DO UPDATE SET stored = c.stored + EXCLUDED.stored, rejected = c.rejected + EXCLUDED.rejected`
  return `${guard};\nCOPY readings (${COPY_COLUMNS}) FROM STDIN;\n${fl}${cnt}`
}

type Connection = { sendCopyFromChunk: (chunk: Buffer) => void, endCopyFrom: () => void, sendCopyFail: (msg: string) => void }
type QueryCtor = new (text: string, values: undefined, cb: (err: Error | null) => void) => object

/**
 * A pg Query that answers the server's CopyInResponse with `data` (node-postgres runs a
 * submittable's handleCopyInResponse when COPY ... FROM STDIN starts; its own Query refuses
 * the copy). The rest (results, errors, ReadyForQuery) is pg's Query.
 */
class CopyInQuery extends (pg.Query as unknown as QueryCtor) {
  constructor (text: string, private readonly data: () => string, cb: (err: Error | null) => void) { super(text, undefined, cb) }
  handleCopyInResponse (con: Connection): void {
    let data: Buffer
    try {
      data = Buffer.from(this.data())
    } catch (err) {
      // pg calls this from its message handler: a throw here would be nobody's. CopyFail
      // makes the server fail the COPY, and the message, with this text instead.
      con.sendCopyFail(`ingest fast path: cannot encode the rows: ${(err as Error).message}`)
      return
    }
    con.sendCopyFromChunk(data)
    con.endCopyFrom()
  }
}

/** Runs the fast path's message; resolves after its commit, rejects with the server's error (nothing stored). */
export function runCopy (c: pg.ClientBase, req: PgRequest, shard: number): Promise<void> {
  const text = copySql(req, shard)
  return new Promise<void>((resolve, reject) => {
    void c.query(new CopyInQuery(text, () => copyData(req), (err) => { if (err) reject(err); else resolve() }) as never)
  })
}
