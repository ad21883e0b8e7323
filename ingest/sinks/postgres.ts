/**
 * PostgreSQL sink (docs/postgres.md): the ingest process keeps no state of its own, so any
 * number of processes serve the same gateways on one database.
 *
 * - Connections and outage handling: postgres-pool.ts (a lost database makes the sink
 *   unready and fail fast with retryable errors until a back-off probe reconnects).
 * - Schema and migrations, run at open under an advisory lock: postgres-schema.ts.
 * - Write path (dedup by the table's keys, floors, evicted ranges, counters, one
 *   transaction per request, answered after COMMIT): postgres-write.ts, with its COPY
 *   fast path for requests that need no dedup decision in postgres-copy.ts.
 * - Query API and stats with keyset pagination: postgres-query.ts.
 *
 * Crash behaviour: a request is one transaction; if the database or the connection dies
 * before COMMIT nothing of it is stored and the items are answered retry; if it dies after
 * COMMIT but before the answer, the gateway resends and gets `duplicate`.
 *
 * Text PostgreSQL cannot hold (U+0000, an unpaired UTF-16 surrogate from a JSON payload)
 * cannot go into text or jsonb columns: such an item is answered `rejected` with a reason
 * instead of failing its whole batch again and again (the leveldb sink stores it).
 */
import { StoreError } from '../../protocol/index.ts'
import { itemOf, type Item } from '../item.ts'
import { isTransient, PgPool, type PgHealthState } from './postgres-pool.ts'
import { queryConflicts, queryDevice, queryStats } from './postgres-query.ts'
import { prepareSchema } from './postgres-schema.ts'
import { writeRequest, type PgRequest, type WritePaths } from './postgres-write.ts'
import type { ConflictPage, ConflictQuery, DevicePage, DeviceQuery, ItemOutcome, Sink, Stats, StoreRequest } from './types.ts'

export type PostgresSinkOptions = {
  url: string
  poolMax?: number
  connectTimeoutMs?: number
  /** How long `open` keeps trying to reach the database and migrate (transient errors). */
  startupTimeoutMs?: number
  onState?: (state: PgHealthState, err?: unknown) => void
  /** Called after each request's transaction: seconds. */
  onCommit?: (seconds: number) => void
}

// eslint-disable-next-line no-control-regex
const UNSTORABLE_TEXT = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

export function unstorableText (s: string): boolean { return UNSTORABLE_TEXT.test(s) }

function storable (it: Item): boolean {
  if (typeof it.boot === 'string' && unstorableText(it.boot)) return false
  for (const [k, v] of Object.entries(it.values)) if (unstorableText(k) || (typeof v === 'string' && unstorableText(v))) return false
  return true
}

export class PostgresSink implements Sink {
  readonly kind = 'postgres'
  private closing: Promise<void> | null = null
  private inFlight = 0
  private idleWaiters: (() => void)[] = []
  /** Requests written by COPY, by COPY then the INSERT statement, by the INSERT statement (postgres-write.ts). */
  readonly writes: WritePaths = { copy: 0, copyFellBack: 0, insert: 0 }

  private constructor (private readonly pool: PgPool, private readonly opts: PostgresSinkOptions) {}

  static async open (opts: PostgresSinkOptions): Promise<PostgresSink> {
    const pool = new PgPool({ url: opts.url, max: opts.poolMax ?? 10, connectTimeoutMs: opts.connectTimeoutMs ?? 5000, onState: opts.onState })
    try {
      await prepareSchema(pool, opts.startupTimeoutMs ?? 30_000)
    } catch (err) {
      await pool.close()
      throw err
    }
    return new PostgresSink(pool, opts)
  }

  /**
   * False while the database is unreachable (reported on /readyz). Asked, it checks with a
   * `SELECT 1` too: an ingest that has sent nothing since the database went away would
   * otherwise still call itself ready to a load balancer (a failed check marks the pool
   * down and starts its reconnect probe).
   */
  async ready (): Promise<boolean> {
    if (this.pool.health !== 'up') return false
    try {
      await this.pool.withClient((c) => c.query('SELECT 1'))
      return true
    } catch {
      return false
    }
  }

  async storeBatch (req: StoreRequest): Promise<ItemOutcome[]> {
    if (this.closing) throw new StoreError('sink is closing', { retryable: true })
    const epochOk = !unstorableText(req.epoch) && !unstorableText(req.gateway) && !unstorableText(req.fleet ?? '')
    const all = req.items.map(itemOf)
    const keep = all.map((it) => epochOk && storable(it))
    const items = all.filter((_, i) => keep[i])
    const sub: PgRequest = { ...req, items, rejected: req.rejected + (req.items.length - items.length) }
    this.inFlight++
    const t0 = process.hrtime.bigint()
    try {
      const outs = await this.pool.withClient((c) => writeRequest(c, sub, this.writes))
      this.opts.onCommit?.(Number(process.hrtime.bigint() - t0) / 1e9)
      let j = 0
      return keep.map((k) => k ? outs[j++]! : 'rejected')
    } catch (err) {
      if (err instanceof StoreError) throw err
      throw new StoreError(`PostgreSQL write failed: ${(err as Error).message}`, { cause: err, retryable: isTransient(err) })
    } finally {
      if (--this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w()
    }
  }

  queryDevice (q: DeviceQuery): Promise<DevicePage> {
    return this.pool.withClient((c) => queryDevice(c, q))
  }

  queryConflicts (q: ConflictQuery): Promise<ConflictPage> {
    return this.pool.withClient((c) => queryConflicts(c, q))
  }

  stats (): Promise<Stats> {
    return this.pool.withClient((c) => queryStats(c))
  }

  close (): Promise<void> {
    this.closing ??= (async () => {
      if (this.inFlight > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
      await this.pool.close()
    })()
    return this.closing
  }
}
