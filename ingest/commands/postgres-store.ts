/**
 * The command store on PostgreSQL (store.ts is the contract; docs/postgres.md the tables):
 * the tables of migration 4 (../sinks/postgres-schema.ts) beside the readings, in the same
 * database, so any number of ingest processes share the commands as they share the
 * readings. Every write is one transaction answered after COMMIT (synchronous_commit on,
 * ../sinks/postgres-pool.ts).
 *
 * - create: one transaction: the idempotency lookup, the device's next `n` from
 *   command_device_counters (`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`: the counter
 *   row's lock serialises the creates of one device), the INSERT. Two concurrent creates
 *   with one key: the second INSERT meets the first's row in the unique index
 *   `commands_idempotency`, waits for its transaction and skips (`ON CONFLICT DO
 *   NOTHING`); it then reads the winner (a new statement sees what committed) and rolls
 *   back, so its counter increment is undone and `n` has no gap.
 * - update: `SELECT ... FOR UPDATE` of the ids in id order (two updates of overlapping ids
 *   lock in one order: no deadlock), `change`, an UPDATE of each row that changed, COMMIT.
 * - list: keyset pagination on (updated_at, id) (`commands_feed`); the cursor is the last
 *   row's (updatedAt, id), base64url JSON, as postgres-query.ts's cursors.
 * - presence: command_presence per (fleet, gateway, device) with the gateway's `at`
 *   (an older `at` loses), command_gateways for when the ingest last heard from a gateway.
 *
 * Text PostgreSQL cannot store (U+0000, an unpaired UTF-16 surrogate) in any text or JSON
 * value of a command is refused with a ValidationError naming the field, before anything
 * is written (the leveldb store keeps it).
 */
import type pg from 'pg'
import { COMMAND_STATES, type CommandState } from '../../protocol/commands.ts'
import { EdgeError, StoreError, ValidationError } from '../../protocol/index.ts'
import { unstorableText } from '../sinks/postgres.ts'
import { isRetryableInPlace, isTransient, PgPool, type PgHealthState } from '../sinks/postgres-pool.ts'
import { prepareSchema } from '../sinks/postgres-schema.ts'
import type { CommandPage, CommandQuery, CommandRecord, CommandStore, HistoryEntry, NewCommand, PresenceEntry } from './store.ts'

export type PostgresCommandStoreOptions = {
  url: string
  /** connections of the store's own pool (commands are few beside readings) */
  poolMax?: number
  connectTimeoutMs?: number
  startupTimeoutMs?: number
  onState?: (state: PgHealthState, err?: unknown) => void
}

/** Not final: the predicate of the partial indexes of migration 4, written the same way. */
const OPEN_STATES_SQL = "state IN ('queued', 'at-gateway', 'delivered')"

const COLUMNS = `id, fleet, device, n, name, args, created_at, expires_at, updated_at, state, gateway, recall,
  result, result IS NOT NULL AS has_result, error, history, idempotency_key, fingerprint`

type Row = {
  id: string, fleet: string, device: string, n: string, name: string, args: unknown, created_at: string, expires_at: string, updated_at: string,
  state: CommandState, gateway: string | null, recall: 'move' | 'cancel' | null, result: unknown, has_result: boolean, error: string | null,
  history: HistoryEntry[], idempotency_key: string | null, fingerprint: string | null
}

const MAX_ATTEMPTS = 5

function toRecord (r: Row): CommandRecord {
  const rec: CommandRecord = {
    id: r.id,
    fleet: r.fleet,
    device: r.device,
    n: Number(r.n),
    name: r.name,
    args: r.args,
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
    updatedAt: Number(r.updated_at),
    state: r.state,
    gateway: r.gateway,
    recall: r.recall,
    history: r.history
  }
  if (r.has_result) rec.result = r.result
  if (r.error !== null) rec.error = r.error
  if (r.idempotency_key !== null) rec.idempotencyKey = r.idempotency_key
  if (r.fingerprint !== null) rec.fingerprint = r.fingerprint
  return rec
}

/** Refuses a string PostgreSQL cannot hold, naming where it is. */
function checkText (s: string, field: string): void {
  if (unstorableText(s)) throw new ValidationError(field, 'text PostgreSQL cannot store (U+0000 or an unpaired UTF-16 surrogate)')
}

/** Every key and string of a JSON value. */
function checkJson (v: unknown, field: string, depth = 0): void {
  if (typeof v === 'string') { checkText(v, field); return }
  if (v === null || typeof v !== 'object' || depth > 64) return
  if (Array.isArray(v)) { v.forEach((x, i) => checkJson(x, `${field}[${i}]`, depth + 1)); return }
  for (const [k, x] of Object.entries(v)) {
    checkText(k, `${field} key`)
    checkJson(x, `${field}.${k}`, depth + 1)
  }
}

function checkRecord (c: NewCommand | CommandRecord): void {
  for (const f of ['id', 'fleet', 'device', 'name', 'state'] as const) checkText(c[f], f)
  if (c.gateway !== null) checkText(c.gateway, 'gateway')
  if (c.error !== undefined) checkText(c.error, 'error')
  if (c.idempotencyKey !== undefined) checkText(c.idempotencyKey, 'idempotencyKey')
  if (c.fingerprint !== undefined) checkText(c.fingerprint, 'fingerprint')
  checkJson(c.args, 'args')
  if (c.result !== undefined) checkJson(c.result, 'result')
  checkJson(c.history, 'history')
}

/** jsonb parameters: always JSON text (a bare JS string would be sent as text, not JSON); undefined args are null. */
const json = (v: unknown): string => JSON.stringify(v ?? null)

function encodeCursor (updatedAt: number, id: string): string {
  return Buffer.from(JSON.stringify([updatedAt, id]), 'utf8').toString('base64url')
}

function decodeCursor (cursor: string): [number, string] {
  const bad = (): ValidationError => new ValidationError('cursor', 'not a cursor returned by this API')
  if (!/^[A-Za-z0-9_-]{1,1024}$/.test(cursor)) throw bad()
  let t: unknown
  try { t = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) } catch { throw bad() }
  if (!Array.isArray(t) || t.length !== 2 || !Number.isSafeInteger(t[0]) || typeof t[1] !== 'string' || unstorableText(t[1])) throw bad()
  return [t[0] as number, t[1]]
}

function toStoreError (err: unknown): Error {
  if (err instanceof EdgeError) return err
  return new StoreError(`PostgreSQL command store: ${(err as Error).message}`, { cause: err, retryable: isTransient(err) })
}

/** What a transaction body returns: its value, and whether to roll back instead of committing. */
type TxResult<T> = { value: T, rollback?: boolean }

export class PostgresCommandStore implements CommandStore {
  readonly kind = 'postgres'
  private closed = false

  /** `ownsPool`: close() closes the pool too (a store opened with `open`). */
  private constructor (private readonly pool: PgPool, private readonly ownsPool: boolean) {}

  /** Its own pool on `url`; migrates the schema (the readings sink's migrations, under the same advisory lock). */
  static async open (opts: PostgresCommandStoreOptions): Promise<PostgresCommandStore> {
    const pool = new PgPool({ url: opts.url, max: opts.poolMax ?? 4, connectTimeoutMs: opts.connectTimeoutMs ?? 5000, onState: opts.onState })
    try {
      await prepareSchema(pool, opts.startupTimeoutMs ?? 30_000)
    } catch (err) {
      await pool.close()
      throw err
    }
    return new PostgresCommandStore(pool, true)
  }

  /** On a pool someone else opened and closes (whose database is already migrated). */
  static onPool (pool: PgPool): PostgresCommandStore {
    return new PostgresCommandStore(pool, false)
  }

  private async run<T> (fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError('command store is closed', { retryable: true })
    try {
      return await this.pool.withClient(fn)
    } catch (err) {
      throw toStoreError(err)
    }
  }

  /**
   * One transaction; with `retry`, deadlocks and serialization failures run it again (`body`
   * must be repeatable then). update does not retry: `change` runs once per call, so a
   * caller may act on what it decided (its row locks are taken in id order: no deadlock).
   */
  private async tx<T> (body: (c: pg.PoolClient) => Promise<TxResult<T>>, retry = true): Promise<T> {
    if (this.closed) throw new StoreError('command store is closed', { retryable: true })
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.pool.withClient(async (c) => {
          await c.query('BEGIN')
          let r: TxResult<T>
          try {
            r = await body(c)
          } catch (err) {
            await c.query('ROLLBACK').catch(() => {})
            throw err
          }
          await c.query(r.rollback === true ? 'ROLLBACK' : 'COMMIT')
          return r.value
        })
      } catch (err) {
        if (retry && attempt < MAX_ATTEMPTS && isRetryableInPlace(err)) continue
        throw toStoreError(err)
      }
    }
  }

  async create (c: NewCommand): Promise<{ record: CommandRecord, created: boolean }> {
    checkRecord(c)
    return this.tx<{ record: CommandRecord, created: boolean }>(async (db) => {
      if (c.idempotencyKey !== undefined) {
        const { rows } = await db.query<Row>(`SELECT ${COLUMNS} FROM commands WHERE fleet = $1 AND idempotency_key = $2`, [c.fleet, c.idempotencyKey])
        if (rows[0] !== undefined) return { value: { record: toRecord(rows[0]), created: false }, rollback: true }
      }
      const { rows: nr } = await db.query<{ last_n: string }>(
        `INSERT INTO command_device_counters AS k (fleet, device, last_n) VALUES ($1, $2, 1)
         ON CONFLICT (fleet, device) DO UPDATE SET last_n = k.last_n + 1 RETURNING last_n`, [c.fleet, c.device])
      const n = Number(nr[0]!.last_n)
      const { rows } = await db.query<Row>(
        `INSERT INTO commands (id, fleet, device, n, name, args, created_at, expires_at, updated_at, state, gateway, recall, result, error, history, idempotency_key, fingerprint)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $7, $9, $10, $11, $12::jsonb, $13, $14::jsonb, $15, $16)
         ON CONFLICT (fleet, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING ${COLUMNS}`,
        [c.id, c.fleet, c.device, n, c.name, json(c.args), c.createdAt, c.expiresAt, c.state, c.gateway, c.recall,
          c.result === undefined ? null : json(c.result), c.error ?? null, json(c.history), c.idempotencyKey ?? null, c.fingerprint ?? null])
      if (rows[0] !== undefined) return { value: { record: toRecord(rows[0]), created: true } }
      // A concurrent create with the same key committed first: this statement sees it.
      const { rows: won } = await db.query<Row>(`SELECT ${COLUMNS} FROM commands WHERE fleet = $1 AND idempotency_key = $2`, [c.fleet, c.idempotencyKey])
      if (won[0] === undefined) throw new StoreError('idempotency key conflict without a command holding it', { retryable: true })
      return { value: { record: toRecord(won[0]), created: false }, rollback: true }
    })
  }

  async get (id: string): Promise<CommandRecord | null> {
    if (unstorableText(id)) return null
    const { rows } = await this.run((c) => c.query<Row>(`SELECT ${COLUMNS} FROM commands WHERE id = $1`, [id]))
    return rows[0] === undefined ? null : toRecord(rows[0])
  }

  async update (ids: readonly string[], change: (current: readonly (CommandRecord | null)[]) => readonly (CommandRecord | null)[]): Promise<(CommandRecord | null)[]> {
    const wanted = [...new Set(ids.filter((id) => !unstorableText(id)))].sort()
    return this.tx(async (db) => {
      const { rows } = await db.query<Row>(`SELECT ${COLUMNS} FROM commands WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE`, [wanted])
      const byId = new Map(rows.map((r) => [r.id, r]))
      const current = ids.map((id) => { const r = byId.get(id); return r === undefined ? null : toRecord(r) })
      // What each record was, to tell a changed one (a new object, or the same one changed in place).
      const before = current.map((r) => r === null ? null : JSON.stringify(r))
      const next = change(current)
      if (next.length !== ids.length) throw new TypeError(`update: change returned ${next.length} records for ${ids.length} ids`)
      const out: (CommandRecord | null)[] = current.slice()
      const written = new Map<string, CommandRecord>()
      for (let i = 0; i < ids.length; i++) {
        const rec = next[i]
        if (rec === null || rec === undefined) continue
        if (current[i] === null) throw new TypeError(`update: change returned a record for the unknown id ${ids[i]}`)
        if (rec.id !== ids[i]) throw new TypeError(`update: change returned the record of ${rec.id} for ${ids[i]}`)
        if (JSON.stringify(rec) === before[i]) continue
        checkRecord(rec)
        const { rows: up } = await db.query<Row>(
          `UPDATE commands SET fleet = $2, device = $3, n = $4, name = $5, args = $6::jsonb, created_at = $7, expires_at = $8, updated_at = $9,
             state = $10, gateway = $11, recall = $12, result = $13::jsonb, error = $14, history = $15::jsonb, idempotency_key = $16, fingerprint = $17
           WHERE id = $1 RETURNING ${COLUMNS}`,
          [rec.id, rec.fleet, rec.device, rec.n, rec.name, json(rec.args), rec.createdAt, rec.expiresAt, rec.updatedAt, rec.state, rec.gateway, rec.recall,
            rec.result === undefined ? null : json(rec.result), rec.error ?? null, json(rec.history), rec.idempotencyKey ?? null, rec.fingerprint ?? null])
        written.set(rec.id, toRecord(up[0]!))
      }
      for (let i = 0; i < ids.length; i++) { const w = written.get(ids[i]!); if (w !== undefined) out[i] = w }
      return { value: out }
    }, false)
  }

  async openForGateway (gateway: string, limit: number): Promise<CommandRecord[]> {
    if (unstorableText(gateway)) return []
    const { rows } = await this.run((c) => c.query<Row>(
      `SELECT ${COLUMNS} FROM commands WHERE gateway = $1 AND ${OPEN_STATES_SQL} ORDER BY device, n, id LIMIT $2`, [gateway, limit]))
    return rows.map(toRecord)
  }

  async openForDevice (fleet: string, device: string): Promise<CommandRecord[]> {
    if (unstorableText(fleet) || unstorableText(device)) return []
    const { rows } = await this.run((c) => c.query<Row>(
      `SELECT ${COLUMNS} FROM commands WHERE fleet = $1 AND device = $2 AND ${OPEN_STATES_SQL} ORDER BY n`, [fleet, device]))
    return rows.map(toRecord)
  }

  async dueForExpiry (now: number, limit: number): Promise<CommandRecord[]> {
    const { rows } = await this.run((c) => c.query<Row>(
      `SELECT ${COLUMNS} FROM commands WHERE expires_at <= $1 AND ${OPEN_STATES_SQL} ORDER BY expires_at, id LIMIT $2`, [now, limit]))
    return rows.map(toRecord)
  }

  async list (q: CommandQuery): Promise<CommandPage> {
    const params: unknown[] = []
    const where: string[] = []
    const add = (sql: string, v: unknown): void => { params.push(v); where.push(sql.replace('?', `$${params.length}`)) }
    for (const [f, v] of [['fleet', q.fleet], ['device', q.device]] as const) {
      if (v === undefined) continue
      if (unstorableText(v)) return { commands: [], next: null }
      add(`${f} = ?`, v)
    }
    if (q.state !== undefined) add('state = ?', q.state)
    if (q.since !== undefined) add('updated_at >= ?', q.since)
    if (q.cursor !== undefined) {
      const [u, id] = decodeCursor(q.cursor)
      params.push(u, id)
      where.push(`(updated_at, id) > ($${params.length - 1}::bigint, $${params.length})`)
    }
    params.push(q.limit + 1)
    const { rows } = await this.run((c) => c.query<Row>(
      `SELECT ${COLUMNS} FROM commands ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY updated_at, id LIMIT $${params.length}`, params))
    const page = rows.slice(0, q.limit).map(toRecord)
    const last = page[page.length - 1]
    return { commands: page, next: rows.length > q.limit && last !== undefined ? encodeCursor(last.updatedAt, last.id) : null }
  }

  async counts (): Promise<Record<CommandState, number>> {
    const { rows } = await this.run((c) => c.query<{ state: CommandState, n: string }>('SELECT state, count(*) AS n FROM commands GROUP BY state'))
    const out = Object.fromEntries(COMMAND_STATES.map((s) => [s, 0])) as Record<CommandState, number>
    for (const r of rows) out[r.state] = Number(r.n)
    return out
  }

  async setPresence (fleet: string, gateway: string, entries: readonly { device: string, connected: boolean, at: number }[], snapshot: boolean, seenAt: number): Promise<void> {
    checkText(fleet, 'fleet')
    checkText(gateway, 'gateway')
    entries.forEach((e, i) => checkText(e.device, `presence[${i}].device`))
    // One entry per device (the newest), so that one statement never touches a row twice.
    const newest = new Map<string, { device: string, connected: boolean, at: number }>()
    for (const e of entries) { const h = newest.get(e.device); if (h === undefined || e.at >= h.at) newest.set(e.device, e) }
    const list = [...newest.values()].sort((a, b) => a.device < b.device ? -1 : a.device > b.device ? 1 : 0)
    await this.tx(async (db) => {
      await db.query(`INSERT INTO command_gateways AS g (gateway, seen_at) VALUES ($1, $2)
        ON CONFLICT (gateway) DO UPDATE SET seen_at = GREATEST(g.seen_at, EXCLUDED.seen_at)`, [gateway, seenAt])
      if (list.length > 0) {
        await db.query(
          `INSERT INTO command_presence AS p (fleet, gateway, device, connected, at, seen_at)
           SELECT $1, $2, x.device, x.connected, x.at, $3 FROM unnest($4::text[], $5::boolean[], $6::bigint[]) AS x(device, connected, at) ORDER BY x.device
           ON CONFLICT (fleet, gateway, device) DO UPDATE SET connected = EXCLUDED.connected, at = EXCLUDED.at, seen_at = GREATEST(p.seen_at, EXCLUDED.seen_at)
           WHERE p.at <= EXCLUDED.at`,
          [fleet, gateway, seenAt, list.map((e) => e.device), list.map((e) => e.connected), list.map((e) => e.at)])
      }
      if (snapshot) {
        // Devices the gateway no longer lists are not connected there (their `at` stays).
        await db.query(
          `UPDATE command_presence SET connected = false, seen_at = GREATEST(seen_at, $3)
           WHERE fleet = $1 AND gateway = $2 AND connected AND NOT (device = ANY($4::text[]))`,
          [fleet, gateway, seenAt, list.map((e) => e.device)])
      }
      return { value: undefined }
    })
  }

  async touchGateway (gateway: string, seenAt: number): Promise<void> {
    checkText(gateway, 'gateway')
    await this.run((c) => c.query(`INSERT INTO command_gateways AS g (gateway, seen_at) VALUES ($1, $2)
      ON CONFLICT (gateway) DO UPDATE SET seen_at = GREATEST(g.seen_at, EXCLUDED.seen_at)`, [gateway, seenAt]))
  }

  async presenceOf (fleet: string, device: string): Promise<PresenceEntry[]> {
    if (unstorableText(fleet) || unstorableText(device)) return []
    const { rows } = await this.run((c) => c.query<{ gateway: string, connected: boolean, at: string, seen_at: string }>(
      `SELECT p.gateway, p.connected, p.at, GREATEST(p.seen_at, g.seen_at) AS seen_at
       FROM command_presence p LEFT JOIN command_gateways g ON g.gateway = p.gateway
       WHERE p.fleet = $1 AND p.device = $2 ORDER BY p.gateway`, [fleet, device]))
    return rows.map((r) => ({ gateway: r.gateway, connected: r.connected, at: Number(r.at), seenAt: Number(r.seen_at) }))
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.ownsPool) await this.pool.close()
  }
}
