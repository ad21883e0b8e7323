/**
 * Schema of the postgres sink, created and migrated at startup (docs/postgres.md).
 *
 * Migrations are numbered and applied in order, each in its own transaction together with
 * its `schema_migrations` row, so a crash mid-migration leaves the previous version. Every
 * ingest process runs `migrate` when it starts; `pg_advisory_lock` makes concurrent
 * starts take turns, and the second one finds nothing to do. A database migrated by a
 * newer build (a version this build does not know) is refused rather than written to.
 *
 * readings: one row per stored reading.
 *   time      timestamptz  device time (`ts`) if it sent one, else gateway receive time
 *   rx, ts    bigint       gateway receive / device time, ms since the Unix epoch (exact)
 *   gateway, epoch, p, s  the gateway's id for the item (upstream protocol v1)
 *   fleet     text         the gateway's fleet when it stored the reading (read-auth.ts)
 *   device, boot (jsonb: number, string or SQL NULL), seq, values (jsonb)
 *   boot_key  text         sort key of boot: '0' none, '1'+14 hex numeric, '2'+hex(utf8) text
 *   pos       bigint       seq, or 2^53 + rx for a reading without seq (they follow, by rx)
 * Keys (each includes `device`, so Citus can distribute the table by device):
 *   PRIMARY KEY (device, gateway, epoch, p, s): the transport key. A gateway seq names one
 *     reading of one device, so this is as unique as (gateway, epoch, p, s) alone.
 *   UNIQUE (device, fleet, boot_key, seq) WHERE seq IS NOT NULL: the natural key; a
 *     reading resent through another gateway or epoch of the same fleet conflicts here, the
 *     same (device, boot, seq) from another fleet does not (one fleet cannot pre-empt
 *     another's readings). A missing boot is the value '0', not NULL, so readings without a
 *     boot are deduplicated like the others.
 * Migration 2 added `fleet` (rows stored before it are fleet 'default', the fleet of every
 *   gateway before fleets existed) and replaced the natural key (device, boot_key, seq).
 * ingest_floors, ingest_evicted, ingest_counters: dedup floors, evicted ranges (merged
 *   runs) and per-gateway counters (sharded rows, summed by /v1/stats) of the ingest.
 * ingest_conflicts (migration 3): natural-key conflicts, one row per copy that arrived with
 *   a stored reading's natural key and other content (ts or values), with the stored
 *   reading's transport key and content beside it; keyed by the copy's transport key (with
 *   device, for Citus), so a retransmit of the copy adds nothing. Migration 3 also adds the
 *   `conflicts` counter column.
 * commands, command_device_counters, command_presence, command_gateways (migration 4): the
 *   commands to devices (ingest/commands/postgres-store.ts, docs/commands.md). Every unique
 *   key holds `device` or is the command id, except the idempotency key (fleet,
 *   idempotency_key): a key names one request of a fleet whatever device it was for (the
 *   same key sent for another device is a reused key, not a new command), so it cannot
 *   hold the device; command_gateways is keyed by gateway (it says when a gateway was last
 *   heard from, for all its devices).
 */
import { setTimeout as sleep } from 'node:timers/promises'
import type pg from 'pg'
import { StoreError } from '../../protocol/index.ts'
import { isConnectionError, isTransient, watchCheckedOut, type PgPool } from './postgres-pool.ts'

/** Key of the advisory lock held while migrating (any constant unique to this app). */
export const MIGRATION_LOCK_KEY = 7_264_912_001

/** 2^53: pos of a seq-less reading is this plus its rx. */
export const SEQLESS_POS_BASE = 9007199254740992n

export type Migration = { version: number, name: string, sql: string }

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'readings, floors, evicted ranges, counters',
    sql: `
      CREATE TABLE readings (
        time timestamptz NOT NULL,
        rx bigint NOT NULL,
        ts bigint,
        gateway text COLLATE "C" NOT NULL,
        epoch text COLLATE "C" NOT NULL,
        p integer NOT NULL,
        s bigint NOT NULL,
        device text COLLATE "C" NOT NULL,
        boot jsonb,
        seq bigint,
        values jsonb NOT NULL,
        boot_key text COLLATE "C" NOT NULL,
        pos bigint GENERATED ALWAYS AS (coalesce(seq, ${SEQLESS_POS_BASE} + rx)) STORED,
        PRIMARY KEY (device, gateway, epoch, p, s)
      );
      CREATE UNIQUE INDEX readings_natural_key ON readings (device, boot_key, seq) WHERE seq IS NOT NULL;
      CREATE INDEX readings_device_order ON readings (device, boot_key, pos, gateway, epoch, p, s);
      CREATE INDEX readings_device_time ON readings (device, time);
      CREATE INDEX readings_time ON readings USING brin (time);
      CREATE TABLE ingest_floors (
        gateway text COLLATE "C" NOT NULL,
        epoch text COLLATE "C" NOT NULL,
        p integer NOT NULL,
        floor bigint NOT NULL,
        PRIMARY KEY (gateway, epoch, p)
      );
      CREATE TABLE ingest_evicted (
        gateway text COLLATE "C" NOT NULL,
        epoch text COLLATE "C" NOT NULL,
        p integer NOT NULL,
        runs jsonb NOT NULL,
        PRIMARY KEY (gateway, epoch, p)
      );
      CREATE TABLE ingest_counters (
        gateway text COLLATE "C" NOT NULL,
        shard smallint NOT NULL,
        stored bigint NOT NULL DEFAULT 0,
        duplicates bigint NOT NULL DEFAULT 0,
        rejected bigint NOT NULL DEFAULT 0,
        evicted bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (gateway, shard)
      );`
  },
  {
    version: 2,
    name: 'natural key per fleet',
    // The default only fills the rows already stored; the write path always names the fleet.
    // Building the index holds a write lock on readings (ingest requests wait, then go on).
    sql: `
      ALTER TABLE readings ADD COLUMN fleet text COLLATE "C" NOT NULL DEFAULT 'default';
      ALTER TABLE readings ALTER COLUMN fleet DROP DEFAULT;
      CREATE UNIQUE INDEX readings_natural_key_fleet ON readings (device, fleet, boot_key, seq) WHERE seq IS NOT NULL;
      DROP INDEX readings_natural_key;`
  },
  {
    version: 3,
    name: 'natural-key conflicts',
    sql: `
      ALTER TABLE ingest_counters ADD COLUMN conflicts bigint NOT NULL DEFAULT 0;
      CREATE TABLE ingest_conflicts (
        fleet text COLLATE "C" NOT NULL,
        device text COLLATE "C" NOT NULL,
        boot jsonb,
        boot_key text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        gateway text COLLATE "C" NOT NULL,
        epoch text COLLATE "C" NOT NULL,
        p integer NOT NULL,
        s bigint NOT NULL,
        ts bigint,
        rx bigint NOT NULL,
        values jsonb NOT NULL,
        stored_gateway text COLLATE "C",
        stored_epoch text COLLATE "C",
        stored_p integer,
        stored_s bigint,
        stored_ts bigint,
        stored_rx bigint,
        stored_values jsonb,
        recorded_at bigint NOT NULL,
        PRIMARY KEY (device, gateway, epoch, p, s)
      );
      CREATE INDEX ingest_conflicts_order ON ingest_conflicts (fleet, device, boot_key, seq, gateway, epoch, p, s);`
  },
  {
    version: 4,
    name: 'commands to devices',
    // "open": not in a final state; the partial indexes' predicate is OPEN_STATES_SQL of
    // ingest/commands/postgres-store.ts, written the same way so the planner matches it.
    sql: `
      CREATE TABLE commands (
        id text COLLATE "C" PRIMARY KEY,
        fleet text COLLATE "C" NOT NULL,
        device text COLLATE "C" NOT NULL,
        n bigint NOT NULL,
        name text COLLATE "C" NOT NULL,
        args jsonb NOT NULL,
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        state text COLLATE "C" NOT NULL CHECK (state IN ('queued', 'at-gateway', 'delivered', 'completed', 'rejected', 'expired', 'cancelled')),
        gateway text COLLATE "C",
        recall text COLLATE "C" CHECK (recall IN ('move', 'cancel')),
        result jsonb,
        error text,
        history jsonb NOT NULL,
        idempotency_key text COLLATE "C",
        fingerprint text COLLATE "C"
      );
      CREATE UNIQUE INDEX commands_device_n ON commands (fleet, device, n);
      CREATE UNIQUE INDEX commands_idempotency ON commands (fleet, idempotency_key) WHERE idempotency_key IS NOT NULL;
      CREATE INDEX commands_open_gateway ON commands (gateway, device, n) WHERE state IN ('queued', 'at-gateway', 'delivered');
      CREATE INDEX commands_open_device ON commands (fleet, device, n) WHERE state IN ('queued', 'at-gateway', 'delivered');
      CREATE INDEX commands_open_expiry ON commands (expires_at, id) WHERE state IN ('queued', 'at-gateway', 'delivered');
      CREATE INDEX commands_feed ON commands (updated_at, id);
      CREATE TABLE command_device_counters (
        fleet text COLLATE "C" NOT NULL,
        device text COLLATE "C" NOT NULL,
        last_n bigint NOT NULL,
        PRIMARY KEY (fleet, device)
      );
      CREATE TABLE command_presence (
        fleet text COLLATE "C" NOT NULL,
        gateway text COLLATE "C" NOT NULL,
        device text COLLATE "C" NOT NULL,
        connected boolean NOT NULL,
        at bigint NOT NULL,
        seen_at bigint NOT NULL,
        PRIMARY KEY (fleet, gateway, device)
      );
      CREATE INDEX command_presence_device ON command_presence (fleet, device);
      CREATE TABLE command_gateways (
        gateway text COLLATE "C" PRIMARY KEY,
        seen_at bigint NOT NULL
      );`
  }
]

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version

/** Brings the database to SCHEMA_VERSION; returns the versions it applied. */
export async function migrate (client: pg.ClientBase): Promise<number[]> {
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_KEY])
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
    const { rows } = await client.query<{ version: number }>('SELECT version FROM schema_migrations')
    const have = new Set(rows.map((r) => r.version))
    const newest = Math.max(0, ...have)
    if (newest > SCHEMA_VERSION) {
      throw new StoreError(`the database schema is at version ${newest}; this build knows up to ${SCHEMA_VERSION}`, { retryable: false })
    }
    const applied: number[] = []
    for (const m of MIGRATIONS) {
      if (have.has(m.version)) continue
      await client.query('BEGIN')
      try {
        await client.query(m.sql)
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name])
        await client.query('COMMIT')
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        throw err
      }
      applied.push(m.version)
    }
    return applied
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {})
  }
}

/**
 * Opens the schema on a fresh pool at startup: migrates, retrying transient failures (the
 * database still starting, a connection refused) with back-off until `startupTimeoutMs`;
 * anything else, or the deadline, is a permanent StoreError. Used by every store on the
 * database (the readings sink, the command store).
 */
export async function prepareSchema (pool: PgPool, startupTimeoutMs: number): Promise<void> {
  const deadline = Date.now() + startupTimeoutMs
  for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
    try {
      const c = await pool.pool.connect()
      let broken: Error | undefined
      const unwatch = watchCheckedOut(c, (err) => { broken ??= err })
      try {
        await migrate(c)
      } catch (err) {
        if (isConnectionError(err)) broken ??= err as Error
        throw err
      } finally { unwatch(); c.release(broken) }
      return
    } catch (err) {
      if (!isTransient(err) || Date.now() + delay > deadline) {
        if (err instanceof StoreError) throw err
        throw new StoreError(`cannot prepare the PostgreSQL schema: ${(err as Error).message}`, { cause: err, retryable: false })
      }
      await sleep(delay)
    }
  }
}
