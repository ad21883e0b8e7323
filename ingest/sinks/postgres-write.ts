/**
 * Write path of the postgres sink: one request is one statement (one transaction).
 *
 * A request with nothing to decide (no key stored yet, none below a floor, none twice)
 * takes the fast path first: COPY, in one message and one transaction (postgres-copy.ts).
 * When that fails it has stored nothing, and the statement below writes the request.
 *
 * The statement inserts the items with a multi-row `INSERT ... SELECT FROM jsonb_array_elements(...)
 * ON CONFLICT DO NOTHING RETURNING p, s`, so the database decides what is a duplicate:
 * a conflict on the primary key (same gateway, epoch, p, s) or on the natural key (same
 * fleet, device, boot, seq through another gateway or epoch), or an item below the partition's
 * recorded floor (filtered by the join), is not returned and is answered `duplicate`. In
 * the same statement the floors advance with GREATEST (never down) and the counters of
 * the gateway grow; the items are checked against the floors recorded before this request,
 * as the leveldb sink does (dedup.ts).
 *
 * Concurrency: any number of ingest processes may run this at once. Two copies of an item
 * in concurrent transactions: the second INSERT waits for the first transaction and then
 * skips the row, so exactly one gets `stored`, and the other's `duplicate` is only sent
 * after the first committed. Counter rows are sharded (a shard per request, the least
 * used by this process's requests in flight) so requests of one gateway do not queue
 * behind one row lock. A deadlock or serialization
 * failure is retried here; any other failure leaves nothing stored (one transaction) and
 * is thrown as a retryable or permanent StoreError.
 *
 * Evicted ranges (rare) are merged per partition under `SELECT ... FOR UPDATE` in the same
 * transaction, so a range reported twice, or by two processes at once, counts once.
 *
 * Natural-key conflicts: an item with a device seq that the INSERT skipped is either a
 * duplicate (its transport key is stored, it is below the floor, or the reading holding its
 * natural key has the same content: ts and values, types.ts `sameContent`, here jsonb
 * equality) or a conflict (the reading holding its natural key has other content). Only
 * when the INSERT skipped such items does a second statement (CONFLICT_SQL) sort them:
 * run after the first one, it sees whatever copy a concurrent transaction committed, and
 * the copies of one batch. Conflicts go to ingest_conflicts (keyed by the copy's transport
 * key: a retransmit adds nothing and is a duplicate) and move from the `duplicates` to the
 * `conflicts` counter. Without evicted ranges the first statement has committed by then:
 * if the second fails, the request fails retryable although its stored items are stored;
 * the gateway's resend gets `duplicate` for those and the second statement runs again.
 */
import type pg from 'pg'
import { StoreError, type EvictedRange, type Floor } from '../../protocol/index.ts'
import type { Item } from '../item.ts'
import { RunSet, type Run } from '../dedup.ts'
import { bootKey } from './leveldb-keys.ts'
import { copyEligible, runCopy } from './postgres-copy.ts'
import { isConnectionError, isRetryableInPlace, isTransient } from './postgres-pool.ts'
import { DEFAULT_FLEET, type ItemOutcome, type PgRequest } from './types.ts'

/** A request as written: its storable items, decoded (../item.ts). */
export type { PgRequest } from './types.ts'

export const COUNTER_SHARDS = 8
const MAX_ATTEMPTS = 5

/** The batch's items, one row each, from the JSON array in $3 (both statements read them so). */
const ITEMS_CTE = `WITH u AS (
  SELECT (e->>0)::int AS p, (e->>1)::bigint AS s, e->>2 AS device, (e->>3)::bigint AS seq,
    CASE WHEN jsonb_typeof(e->4) = 'null' THEN NULL ELSE e->4 END AS boot, e->>8 AS boot_key,
    (e->>5)::bigint AS ts, (e->>6)::bigint AS rx, e->7 AS vals, ord
  FROM jsonb_array_elements($3::jsonb) WITH ORDINALITY AS x(e, ord)
)`

export const INSERT_SQL = `
${ITEMS_CTE}, ins AS (
  INSERT INTO readings (time, rx, ts, gateway, epoch, p, s, device, boot, seq, values, boot_key, fleet)
  SELECT to_timestamp(coalesce(u.ts, u.rx)::float8 / 1000), u.rx, u.ts, $1, $2, u.p, u.s, u.device, u.boot, u.seq, u.vals, u.boot_key, $10
  FROM u LEFT JOIN ingest_floors f ON f.gateway = $1 AND f.epoch = $2 AND f.p = u.p
  WHERE f.floor IS NULL OR u.s >= f.floor
  ORDER BY u.ord
  ON CONFLICT DO NOTHING
  RETURNING p, s
), fl AS (
  INSERT INTO ingest_floors AS f (gateway, epoch, p, floor)
  SELECT $1, $2, x.fp, x.fs FROM unnest($4::int[], $5::bigint[]) AS x(fp, fs) ORDER BY x.fp
  ON CONFLICT (gateway, epoch, p) DO UPDATE SET floor = GREATEST(f.floor, EXCLUDED.floor)
  WHERE f.floor < EXCLUDED.floor
), cnt AS (
  INSERT INTO ingest_counters AS c (gateway, shard, stored, duplicates, rejected, evicted)
  SELECT $1, $6, k.n, $7 - k.n, $8, $9 FROM (SELECT count(*) AS n FROM ins) k
  ON CONFLICT (gateway, shard) DO UPDATE SET stored = c.stored + EXCLUDED.stored, duplicates = c.duplicates + EXCLUDED.duplicates,
    rejected = c.rejected + EXCLUDED.rejected, evicted = c.evicted + EXCLUDED.evicted
)
SELECT p, s FROM ins`

export const CONFLICT_SQL = `
${ITEMS_CTE}, j AS (
  SELECT u.*, n.gateway AS sg, n.epoch AS se, n.p AS sp, n.s AS ss, n.ts AS sts, n.rx AS srx, n.values AS svals
  FROM u
  JOIN readings n ON n.device = u.device AND n.fleet = $4 AND n.boot_key = u.boot_key AND n.seq = u.seq
  LEFT JOIN ingest_floors f ON f.gateway = $1 AND f.epoch = $2 AND f.p = u.p
  WHERE (f.floor IS NULL OR u.s >= f.floor)
    AND NOT EXISTS (SELECT 1 FROM readings r WHERE r.device = u.device AND r.gateway = $1 AND r.epoch = $2 AND r.p = u.p AND r.s = u.s)
    AND NOT (n.ts IS NOT DISTINCT FROM u.ts AND n.values = u.vals)
), ins AS (
  INSERT INTO ingest_conflicts (fleet, device, boot, boot_key, seq, gateway, epoch, p, s, ts, rx, values,
    stored_gateway, stored_epoch, stored_p, stored_s, stored_ts, stored_rx, stored_values, recorded_at)
  SELECT $4, device, boot, boot_key, seq, $1, $2, p, s, ts, rx, vals, sg, se, sp, ss, sts, srx, svals, $6 FROM j ORDER BY ord
  ON CONFLICT DO NOTHING
  RETURNING p, s
), cnt AS (
  UPDATE ingest_counters c SET duplicates = c.duplicates - k.n, conflicts = c.conflicts + k.n
  FROM (SELECT count(*) AS n FROM ins) k WHERE c.gateway = $1 AND c.shard = $5 AND k.n > 0
)
SELECT p, s FROM ins`

/** The skipped items that may be conflicts: those with a device seq (only they have a natural key). */
function conflictCandidates (items: readonly Item[], outcomes: readonly ItemOutcome[]): number[] {
  const out: number[] = []
  for (let i = 0; i < items.length; i++) if (outcomes[i] === 'duplicate' && items[i]!.seq !== null) out.push(i)
  return out
}

/** Sorts the skipped items with a seq into duplicates and conflicts (CONFLICT_SQL); changes `outcomes` in place. */
async function resolveConflicts (c: pg.ClientBase, req: PgRequest, outcomes: ItemOutcome[], shard: number): Promise<void> {
  const cands = conflictCandidates(req.items, outcomes)
  if (cands.length === 0) return
  const rows = cands.map((i) => { const it = req.items[i]!; return [it.p, it.s, it.device, it.seq, it.boot, it.ts, it.rx, it.values, bootKey(it.boot)] })
  const res = await c.query<{ p: number, s: string }>(CONFLICT_SQL, [req.gateway, req.epoch, JSON.stringify(rows), req.fleet ?? DEFAULT_FLEET, shard, Date.now()])
  const conflicted = outcomesOf(cands.map((i) => req.items[i]!), res.rows)
  for (let j = 0; j < cands.length; j++) if (conflicted[j] === 'stored') outcomes[cands[j]!] = 'conflict'
}

/**
 * The statement's parameters for one request (evictedNew: seqs newly recorded as evicted).
 * The items travel as one JSON array of `[p, s, device, seq, boot, ts, rx, values, bootKey]`:
 * JSON.stringify and PostgreSQL's JSON parser are native code, where nine
 * typed arrays would be escaped element by element in JavaScript by node-postgres.
 */
export function insertParams (req: PgRequest, evictedNew: number, shard: number): unknown[] {
  const rows = req.items.map((it) => [it.p, it.s, it.device, it.seq, it.boot, it.ts, it.rx, it.values, bootKey(it.boot)])
  const floors = maxFloors(req.floors)
  return [req.gateway, req.epoch, JSON.stringify(rows), floors.map(([fp]) => fp), floors.map(([, fs]) => fs), shard, req.items.length, req.rejected, evictedNew, req.fleet ?? DEFAULT_FLEET]
}

/** One floor per partition (the highest), sorted by p: one row to lock, in a fixed order. */
function maxFloors (floors: readonly Floor[]): Floor[] {
  const m = new Map<number, number>()
  for (const [p, s] of floors) m.set(p, Math.max(s, m.get(p) ?? 0))
  return [...m].sort((a, b) => a[0] - b[0])
}

/** Maps the returned (p, s) rows onto the items, in order: the first copy is the stored one. */
export function outcomesOf (items: readonly Item[], rows: readonly { p: number, s: string | number }[]): ItemOutcome[] {
  const stored = new Map<string, number>()
  for (const r of rows) { const k = `${r.p}:${r.s}`; stored.set(k, (stored.get(k) ?? 0) + 1) }
  return items.map((it) => {
    const k = `${it.p}:${it.s}`
    const left = stored.get(k) ?? 0
    if (left === 0) return 'duplicate'
    stored.set(k, left - 1)
    return 'stored'
  })
}

/** Merges evicted ranges into ingest_evicted; returns how many seqs were new. In a transaction. */
async function recordEvicted (c: pg.ClientBase, gateway: string, epoch: string, evicted: readonly EvictedRange[]): Promise<number> {
  const byP = new Map<number, EvictedRange[]>()
  for (const r of evicted) { const l = byP.get(r[0]) ?? []; l.push(r); byP.set(r[0], l) }
  let added = 0
  for (const p of [...byP.keys()].sort((a, b) => a - b)) {
    await c.query("INSERT INTO ingest_evicted (gateway, epoch, p, runs) VALUES ($1, $2, $3, '[]') ON CONFLICT DO NOTHING", [gateway, epoch, p])
    const { rows } = await c.query<{ runs: Run[] }>('SELECT runs FROM ingest_evicted WHERE gateway = $1 AND epoch = $2 AND p = $3 FOR UPDATE', [gateway, epoch, p])
    const set = new RunSet(rows[0]?.runs ?? [])
    let n = 0
    for (const [, from, to] of byP.get(p)!) n += set.addRange(from, to)
    if (n > 0) await c.query('UPDATE ingest_evicted SET runs = $4 WHERE gateway = $1 AND epoch = $2 AND p = $3', [gateway, epoch, p, JSON.stringify(set.toJSON())])
    added += n
  }
  return added
}

/** How requests were written (tests; operators see the store latency metric). */
export type WritePaths = {
  /** stored by the COPY fast path (postgres-copy.ts) */
  copy: number
  /** tried with COPY, rolled back (a key stored, below a floor), then written by the INSERT statement */
  copyFellBack: number
  /** written by the INSERT ... ON CONFLICT statement (after a fallback or straight away) */
  insert: number
}

/**
 * Requests of this process in flight per counter shard: a request takes the least used
 * shard from a random start, so requests of one process do not wait for each other's
 * counter row lock while there are free shards (other processes still pick at random).
 */
const shardUse = new Array<number>(COUNTER_SHARDS).fill(0)

function takeShard (): number {
  const start = Math.floor(Math.random() * COUNTER_SHARDS)
  let best = start
  for (let i = 1; i < COUNTER_SHARDS; i++) {
    const k = (start + i) % COUNTER_SHARDS
    if (shardUse[k]! < shardUse[best]!) best = k
  }
  shardUse[best]!++
  return best
}

async function attempt (c: pg.ClientBase, req: PgRequest, paths: WritePaths): Promise<ItemOutcome[]> {
  const shard = takeShard()
  try {
    return await attemptWith(c, req, paths, shard)
  } finally {
    shardUse[shard]!--
  }
}

async function attemptWith (c: pg.ClientBase, req: PgRequest, paths: WritePaths, shard: number): Promise<ItemOutcome[]> {
  if (copyEligible(req)) {
    try {
      await runCopy(c, req, shard)
      paths.copy++
      return req.items.map(() => 'stored')
    } catch (err) {
      // Rolled back, nothing stored: the statement below decides item by item. A lost
      // connection is not retried here (the caller answers retry).
      if (isConnectionError(err)) throw err
      paths.copyFellBack++
    }
  }
  paths.insert++
  if (req.evicted.length === 0) {
    const { rows } = await c.query<{ p: number, s: string }>(INSERT_SQL, insertParams(req, 0, shard))
    const outcomes = outcomesOf(req.items, rows)
    await resolveConflicts(c, req, outcomes, shard)
    return outcomes
  }
  await c.query('BEGIN')
  try {
    const added = await recordEvicted(c, req.gateway, req.epoch, req.evicted)
    const { rows } = await c.query<{ p: number, s: string }>(INSERT_SQL, insertParams(req, added, shard))
    const outcomes = outcomesOf(req.items, rows)
    await resolveConflicts(c, req, outcomes, shard)
    await c.query('COMMIT')
    return outcomes
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {})
    throw err
  }
}

/** Stores one request; resolves after COMMIT. Throws StoreError (retryable when transient). */
export async function writeRequest (c: pg.ClientBase, req: PgRequest, paths: WritePaths = { copy: 0, copyFellBack: 0, insert: 0 }): Promise<ItemOutcome[]> {
  for (let i = 1; ; i++) {
    try {
      return await attempt(c, req, paths)
    } catch (err) {
      if (isRetryableInPlace(err) && i < MAX_ATTEMPTS) continue
      if (err instanceof StoreError) throw err
      throw new StoreError(`PostgreSQL write failed: ${(err as Error).message}`, { cause: err, retryable: isTransient(err) })
    }
  }
}
