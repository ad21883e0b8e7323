/**
 * Connections of the postgres sink: a node-postgres Pool plus a health state with named
 * states, so a lost database is noticed once, reported on /readyz, and probed with
 * exponential back-off instead of every request waiting for a connect timeout.
 *
 * States: `up` (requests go through), `down` (the last query failed with a connection
 * error: requests fail fast with a retryable StoreError while a probe loop runs
 * `SELECT 1` with back-off, 100 ms doubling to 5 s, until it answers), `closed`.
 *
 * Every session runs with `synchronous_commit = on`, whatever the server or role default
 * is: a result is only sent after COMMIT, and COMMIT must mean "on disk" (docs/postgres.md).
 */
import pg from 'pg'
import { StoreError } from '../../protocol/index.ts'

export type PgPoolOptions = {
  url: string
  /** Connections per ingest process. */
  max: number
  connectTimeoutMs: number
  /** Called on every state change (logs, metrics). */
  onState?: (state: PgHealthState, err?: unknown) => void
}

export type PgHealthState = 'up' | 'down' | 'closed'

/** SQLSTATE classes and codes after which the same statement may succeed later. */
const TRANSIENT_SQLSTATE = /^(08|53|57P0|58|40001|40P01|55P03|25006)/

/**
 * A connection-level failure (the server went away or cannot be reached), also when wrapped
 * in a StoreError: the write path wraps the driver's error (`cause`) before withClient sees
 * it, and a 57P01 seen only through the wrapper left the pool `up` after a postmaster
 * kill -9 (flaky "the database going away" test).
 */
export function isConnectionError (err: unknown, depth = 0): boolean {
  const e = err as { code?: unknown, message?: unknown, cause?: unknown }
  const code = typeof e?.code === 'string' ? e.code : ''
  if (/^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|EAI_AGAIN)$/.test(code)) return true
  if (/^(08|57P0)/.test(code)) return true // connection exception; admin/crash shutdown
  const msg = typeof e?.message === 'string' ? e.message : ''
  if (/Connection terminated|connection timeout|Client has encountered a connection error|not queryable/i.test(msg)) return true
  return e?.cause !== undefined && depth < 4 && isConnectionError(e.cause, depth + 1)
}

export function isTransient (err: unknown): boolean {
  if (isConnectionError(err)) return true
  const code = (err as { code?: unknown })?.code
  return typeof code === 'string' && TRANSIENT_SQLSTATE.test(code)
}

/** Deadlock or serialization failure: the transaction can simply run again. */
export function isRetryableInPlace (err: unknown): boolean {
  const code = (err as { code?: unknown })?.code
  return code === '40P01' || code === '40001'
}

/**
 * pg-pool takes its own 'error' listener off a client while the client is checked out. A
 * backend that dies between two queries of a checkout (postmaster kill -9 while the write
 * path is between statements, pg_terminate_backend) then emits an 'error' nobody listens
 * to, and that kills the process: an ingest crashed this way in the postmaster-crash fault
 * test on a loaded machine. This listener holds the error for the checkout; the returned
 * function takes it off again before the client goes back to the pool.
 */
export function watchCheckedOut (client: pg.PoolClient, onError: (err: Error) => void): () => void {
  client.on('error', onError)
  return () => { client.removeListener('error', onError) }
}

export class PgPool {
  readonly pool: pg.Pool
  private state: PgHealthState = 'up'
  private probe: Promise<void> | null = null
  private probeTimer: NodeJS.Timeout | null = null
  private wake: () => void = () => {}

  constructor (private readonly opts: PgPoolOptions) {
    this.pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.max,
      connectionTimeoutMillis: opts.connectTimeoutMs,
      idleTimeoutMillis: 30_000,
      options: '-c synchronous_commit=on',
      application_name: 'edge-gateway-ingest'
    })
    // An idle client whose server went away emits 'error' on the pool; unhandled, it would
    // crash the process. It is dropped from the pool by pg; we only note the outage.
    this.pool.on('error', (err) => this.markDown(err))
  }

  get health (): PgHealthState { return this.state }

  /** Throws a retryable StoreError at once while the database is known to be down. */
  checkUp (): void {
    if (this.state === 'closed') throw new StoreError('sink is closing', { retryable: true })
    if (this.state === 'down') throw new StoreError('PostgreSQL is unreachable; reconnecting', { retryable: true })
  }

  /** Runs `fn` with a client from the pool; a connection failure marks the pool down. */
  async withClient<T> (fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    this.checkUp()
    let client: pg.PoolClient
    try {
      client = await this.pool.connect()
    } catch (err) {
      this.markDown(err)
      throw new StoreError(`cannot connect to PostgreSQL: ${(err as Error).message}`, { cause: err, retryable: true })
    }
    let broken: unknown
    const unwatch = watchCheckedOut(client, (err) => { broken ??= err; this.markDown(err) })
    try {
      return await fn(client)
    } catch (err) {
      if (isConnectionError(err)) { broken ??= err; this.markDown(err) }
      throw err
    } finally {
      unwatch()
      // A client whose connection broke (or whose transaction state is unknown) is destroyed.
      client.release(broken === undefined ? undefined : (broken instanceof Error ? broken : true))
    }
  }

  markDown (err: unknown): void {
    if (this.state !== 'up') return
    this.state = 'down'
    this.opts.onState?.('down', err)
    this.probe = this.runProbe()
  }

  private async runProbe (): Promise<void> {
    let delay = 100
    while (this.state === 'down') {
      await new Promise<void>((resolve) => { this.wake = resolve; this.probeTimer = setTimeout(resolve, delay) })
      this.probeTimer = null
      if (this.state !== 'down') return
      const c = new pg.Client({ connectionString: this.opts.url, connectionTimeoutMillis: this.opts.connectTimeoutMs })
      c.on('error', () => {})
      try {
        await c.connect()
        await c.query('SELECT 1')
        if (this.state === 'down') { this.state = 'up'; this.opts.onState?.('up') }
      } catch {
        delay = Math.min(delay * 2, 5000)
      } finally {
        await c.end().catch(() => {})
      }
    }
  }

  async close (): Promise<void> {
    if (this.state === 'closed') return
    this.state = 'closed'
    if (this.probeTimer) clearTimeout(this.probeTimer)
    this.wake()
    await this.probe?.catch(() => {})
    await this.pool.end()
  }
}
