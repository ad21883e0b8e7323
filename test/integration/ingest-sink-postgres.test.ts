import assert from 'node:assert/strict'
import { test } from 'node:test'
import pg from 'pg'
import { PostgresSink } from '../../ingest/sinks/postgres.ts'
import { itemOf } from '../../ingest/item.ts'
import { copyEligible, isoTime, runCopy } from '../../ingest/sinks/postgres-copy.ts'
import { PgPool } from '../../ingest/sinks/postgres-pool.ts'
import { queryDevice } from '../../ingest/sinks/postgres-query.ts'
import { MIGRATIONS } from '../../ingest/sinks/postgres-schema.ts'
import { INSERT_SQL, insertParams } from '../../ingest/sinks/postgres-write.ts'
import { waitFor } from '../helpers/index.ts'
import { freshDatabase, ownPostgres } from '../helpers/postgres.ts'
import { item, req, runSinkContract } from './sink-contract.ts'

runSinkContract('postgres', async () => {
  const url = await freshDatabase()
  return { open: () => PostgresSink.open({ url, poolMax: 4 }) }
})

test('postgres: several processes migrating one empty database at once: one schema, one migration row', async () => {
  const url = await freshDatabase()
  const sinks = await Promise.all(Array.from({ length: 4 }, () => PostgresSink.open({ url, poolMax: 2 })))
  try {
    assert.deepEqual(await sinks[1]!.storeBatch(req([item(0, 1)])), ['stored'])
    assert.deepEqual(await sinks[2]!.storeBatch(req([item(0, 1)])), ['duplicate'], 'the other processes see the same table')
  } finally { for (const s of sinks) await s.close() }
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    assert.deepEqual((await c.query('SELECT version FROM schema_migrations ORDER BY version')).rows, MIGRATIONS.map((m) => ({ version: m.version })))
  } finally { await c.end() }
})

test('postgres: text PostgreSQL cannot hold (U+0000) is answered rejected, the rest of the batch is stored', async (t) => {
  const sink = await PostgresSink.open({ url: await freshDatabase(), poolMax: 2 })
  t.after(() => sink.close())
  const bad = item(0, 2)
  bad[7] = { note: 'a\u0000b' }
  assert.deepEqual(await sink.storeBatch(req([item(0, 1), bad, item(0, 3, { boot: 'x\uD800' })])), ['stored', 'rejected', 'rejected'])
  const st = await sink.stats()
  assert.equal(st.stored, 1)
  assert.equal(st.rejected, 2)
})

test('postgres: the database going away: retryable errors and unready, then ready again after it restarts', async (t) => {
  const srv = await ownPostgres(t)
  const sink = await PostgresSink.open({ url: await srv.createDatabase('gone'), poolMax: 2, connectTimeoutMs: 1000 })
  t.after(() => sink.close())
  assert.deepEqual(await sink.storeBatch(req([item(0, 1)])), ['stored'])
  assert.equal(await sink.ready(), true)
  await srv.kill9()
  await assert.rejects(sink.storeBatch(req([item(0, 2)])), (err: Error & { retryable?: boolean }) => err.name === 'StoreError' && err.retryable === true)
  assert.equal(await sink.ready(), false, 'unready while the database is down')
  await assert.rejects(sink.storeBatch(req([item(0, 2)])), (err: Error & { retryable?: boolean }) => err.retryable === true, 'fails fast while down')
  await srv.restart()
  await waitFor(() => sink.ready(), { timeoutMs: 20_000, what: 'the sink reconnects' })
  assert.deepEqual(await sink.storeBatch(req([item(0, 1), item(0, 2)])), ['duplicate', 'stored'])
})

test('postgres: a backend that dies between two queries of a checkout marks the pool down instead of crashing the process', async (t) => {
  // pg-pool takes its error listener off a checked-out client: before the fix, the
  // client's 'error' here went unheard and killed the process (an ingest crashed so when
  // the postmaster was killed -9 while the write path was between statements).
  const url = await freshDatabase()
  const pool = new PgPool({ url, max: 2, connectTimeoutMs: 2000 })
  t.after(() => pool.close())
  const admin = new pg.Client({ connectionString: url })
  await admin.connect()
  t.after(() => admin.end())
  await assert.rejects(pool.withClient(async (c) => {
    const pid = (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid
    assert.equal((await admin.query('SELECT pg_terminate_backend($1) AS ok', [pid])).rows[0].ok, true)
    // the backend's FATAL arrives while no query is active: pg emits 'error' on the client
    await waitFor(() => pool.health === 'down', { timeoutMs: 5000, what: 'the pool noticed the dead backend' })
    await c.query('SELECT 1')
  }), (err: Error) => /not queryable|terminat|Connection/i.test(err.message))
  assert.equal(pool.health, 'down')
  await waitFor(() => pool.health === 'up', { timeoutMs: 10_000, what: 'the probe brings the pool back' })
  assert.deepEqual((await pool.withClient((c) => c.query('SELECT 1 AS one'))).rows, [{ one: 1 }], 'the broken client was not handed out again')
})

test('postgres: migration 2 puts existing readings in fleet default and keys the natural key by fleet; every unique key holds device', async (t) => {
  const url = await freshDatabase()
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  t.after(() => c.end())
  // A database at schema version 1 with one reading stored by it.
  await c.query('CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())')
  await c.query(MIGRATIONS[0]!.sql)
  await c.query("INSERT INTO schema_migrations (version, name) VALUES (1, 'v1')")
  await c.query(`INSERT INTO readings (time, rx, ts, gateway, epoch, p, s, device, boot, seq, values, boot_key)
    VALUES (now(), 1, 1699999999995, 'gw1', 'ep1', 0, 1, 'dev1', '1', 5, '{"t": 0.5, "ok": true, "tag": "x5"}', '1' || lpad('1', 14, '0'))`) // the content of sink-contract.ts item(_, _, { seq: 5 })
  const sink = await PostgresSink.open({ url, poolMax: 2 })
  t.after(() => sink.close())
  assert.deepEqual((await c.query('SELECT version FROM schema_migrations ORDER BY version')).rows, MIGRATIONS.map((m) => ({ version: m.version })))
  assert.deepEqual((await c.query('SELECT fleet FROM readings')).rows, [{ fleet: 'default' }])
  assert.deepEqual(await sink.storeBatch(req([item(3, 9, { seq: 5 })], { gateway: 'gw2' })), ['duplicate'], 'fleet default: a copy')
  assert.deepEqual(await sink.storeBatch(req([item(3, 9, { seq: 5 })], { gateway: 'gw3', fleet: 'north' })), ['stored'], 'another fleet')
  const { rows } = await c.query<{ name: string, cols: string[] }>(`
    SELECT i.indexrelid::regclass::text AS name, array_agg(a.attname::text ORDER BY a.attname) AS cols
    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
    WHERE i.indrelid = 'readings'::regclass AND i.indisunique GROUP BY 1 ORDER BY 1`)
  assert.deepEqual(rows.map((r) => r.name), ['readings_natural_key_fleet', 'readings_pkey'])
  for (const r of rows) assert.ok(r.cols.includes('device'), `${r.name} (${r.cols.join(', ')}) includes device (Citus)`)
  assert.ok(rows[0]!.cols.includes('fleet'))
})

test('postgres: a query filtered by gateways looks at a bounded number of rows a page; cursors still deliver every reading once', async (t) => {
  const url = await freshDatabase()
  const sink = await PostgresSink.open({ url, poolMax: 2 })
  t.after(() => sink.close())
  // gwA's readings are far apart in the device's order, between runs of gwB's.
  await sink.storeBatch(req(Array.from({ length: 30 }, (_, i) => item(0, i + 1)), { gateway: 'gwB' }))
  await sink.storeBatch(req([item(0, 100, { seq: 3 }), item(0, 101, { seq: 17 }), item(0, 102, { seq: 31 })], { gateway: 'gwA', fleet: 'a' }))
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  t.after(() => c.end())
  const got: number[] = []
  let cursor: string | undefined
  let pages = 0
  for (; pages < 100; pages++) {
    const page = await queryDevice(c, { device: 'dev1', gateways: ['gwA'], limit: 10, ...(cursor === undefined ? {} : { cursor }) }, 4)
    got.push(...page.readings.map((r) => r.s))
    if (page.next === null) break
    cursor = page.next
  }
  assert.deepEqual(got, [100, 101, 102])
  assert.ok(pages >= 33 / 4 - 1, `pages ${pages + 1}: each looked at no more than 4 rows`)
})

/** Every column of readings, in one order, as text (jsonb compared as PostgreSQL prints it). */
async function readingRows (url: string): Promise<unknown[]> {
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  try {
    return (await c.query(`SELECT time::text, rx::text, ts::text, gateway, epoch, p, s::text, device, fleet, boot::text, jsonb_typeof(boot) AS boot_type,
      seq::text, values::text, boot_key, pos::text FROM readings ORDER BY p, s`)).rows
  } finally { await c.end() }
}

test('postgres: the COPY path writes times as Date#toISOString does, across days, years 1 to 9999 and before 1970', () => {
  const cache = { day: NaN, prefix: '' }
  const times = [-62135596800000, -86400001, -86400000, -1, 0, 1, 951782399999, 951782400000, 1767225599999, 1767225600000, 253402300799999]
  for (let t = 1790000000000; t < 1790000000000 + 3 * 86_400_000; t += 3_599_999) times.push(t)
  for (const t of times) assert.equal(isoTime(t, cache), new Date(t).toISOString(), String(t))
})

test('postgres: the COPY path stores exactly what the INSERT path stores (escapes, nulls, text boots, times, jsonb)', async () => {
  const odd = 'tab\there, nl\nthere, cr\r, back\\slash, quote \' and " , \u00e9\u4e2d\ud83d\ude00, \\N, \\.'
  const items = [
    item(0, 1, { device: odd, boot: odd, values: { [odd]: odd, n: -0.5, big: 12345678901234, flag: true, s: 'x\ty' } }),
    item(0, 2, { boot: null, seq: null, ts: null }),
    item(0, 3, { boot: 7, ts: 0, rx: 253402300799999 }),
    item(3, 4, { boot: '', ts: -62135596800000, values: {} }),
    item(3, 5, { device: '\\', boot: 2 ** 40, seq: 2 ** 52, ts: 1790000000123 })
  ].map(itemOf)
  const request = { ...req([]), fleet: 'fleet \'a\'\t\\', gateway: 'gw \'\\\t', epoch: 'ep\n1', items, rejected: 1 }
  assert.equal(copyEligible(request), true)
  const viaCopy = await freshDatabase()
  const viaInsert = await freshDatabase()
  for (const url of [viaCopy, viaInsert]) { const s = await PostgresSink.open({ url, poolMax: 1 }); await s.close() }
  const a = new pg.Client({ connectionString: viaCopy })
  const b = new pg.Client({ connectionString: viaInsert })
  await a.connect(); await b.connect()
  try {
    await runCopy(a, request, 0)
    assert.equal((await b.query(INSERT_SQL, insertParams(request, 0, 0))).rowCount, items.length)
    const rows = await readingRows(viaCopy)
    assert.equal(rows.length, items.length)
    assert.deepEqual(rows, await readingRows(viaInsert))
    const counters = 'SELECT gateway, shard, stored, duplicates, rejected, evicted, conflicts FROM ingest_counters'
    assert.deepEqual((await a.query(counters)).rows, (await b.query(counters)).rows)
  } finally { await a.end(); await b.end() }
})

test('postgres: a batch with nothing to decide goes through COPY; a retransmit, a floor or a key stored meanwhile falls back to the INSERT path with its answers', async (t) => {
  const sink = await PostgresSink.open({ url: await freshDatabase(), poolMax: 2 })
  t.after(() => sink.close())
  assert.deepEqual(await sink.storeBatch(req([item(0, 1), item(0, 2), item(0, 3)], { floors: [[0, 2]] })), ['stored', 'stored', 'stored'])
  assert.deepEqual(sink.writes, { copy: 1, copyFellBack: 0, insert: 0 })
  // a retransmit: COPY meets the primary key, rolls back, the INSERT path answers duplicate
  assert.deepEqual(await sink.storeBatch(req([item(0, 3), item(0, 4)])), ['duplicate', 'stored'])
  assert.deepEqual(sink.writes, { copy: 1, copyFellBack: 1, insert: 1 })
  // below the recorded floor (2), though no longer stored: the guard sends it to the INSERT path
  const c = new pg.Client({ connectionString: (sink as unknown as { opts: { url: string } }).opts.url })
  await c.connect()
  t.after(() => c.end())
  await c.query('DELETE FROM readings WHERE s = 1')
  assert.deepEqual(await sink.storeBatch(req([item(0, 1, { seq: 101 }), item(0, 5)])), ['duplicate', 'stored'])
  assert.deepEqual(sink.writes, { copy: 1, copyFellBack: 2, insert: 2 })
  assert.equal((await c.query('SELECT count(*)::int AS n FROM readings WHERE s = 1')).rows[0].n, 0, 'the item below the floor was not stored')
  // the same natural key through another gateway: a duplicate (same content), a conflict (other content)
  assert.deepEqual(await sink.storeBatch(req([item(1, 50, { seq: 4 }), item(1, 51, { seq: 60 })], { gateway: 'gw2' })), ['duplicate', 'stored'])
  assert.deepEqual(await sink.storeBatch(req([item(1, 52, { seq: 5, values: { t: 0 } })], { gateway: 'gw2' })), ['conflict'])
  assert.deepEqual(sink.writes, { copy: 1, copyFellBack: 4, insert: 4 })
  // a key twice in one batch: straight to the INSERT path
  assert.deepEqual(await sink.storeBatch(req([item(0, 9), item(0, 9)])), ['stored', 'duplicate'])
  assert.deepEqual(sink.writes, { copy: 1, copyFellBack: 4, insert: 5 })
  // a stored key after a new first item: the guard lets it through, COPY meets the key and rolls back
  assert.deepEqual(await sink.storeBatch(req([item(0, 20, { seq: 120 }), item(0, 5)])), ['stored', 'duplicate'])
  assert.deepEqual(sink.writes, { copy: 1, copyFellBack: 5, insert: 6 })
  assert.deepEqual(await sink.storeBatch(req([item(2, 1, { seq: 201 }), item(2, 2, { seq: 202 })], { floors: [[2, 1]] })), ['stored', 'stored'])
  assert.deepEqual(sink.writes, { copy: 2, copyFellBack: 5, insert: 6 })
  const st = await sink.stats()
  assert.deepEqual([st.stored, st.duplicates, st.conflicts], [10, 5, 1])
  assert.deepEqual((await c.query("SELECT p, floor::int FROM ingest_floors WHERE gateway = 'gw1' ORDER BY p")).rows, [{ p: 0, floor: 2 }, { p: 2, floor: 1 }])
})

test('postgres: rows the COPY path cannot encode fail its COPY (CopyFail), not the process; the INSERT path writes them', async (t) => {
  const sink = await PostgresSink.open({ url: await freshDatabase(), poolMax: 1 })
  t.after(() => sink.close())
  let calls = 0
  const values = { t: 1, toJSON: () => { if (calls++ === 0) throw new Error('cannot encode'); return { t: 1 } } }
  assert.deepEqual(await sink.storeBatch(req([item(0, 1, { values: values as never })])), ['stored'])
  assert.deepEqual(sink.writes, { copy: 0, copyFellBack: 1, insert: 1 })
  assert.deepEqual((await sink.queryDevice({ device: 'dev1', limit: 10 })).readings.map((r) => r.values), [{ t: 1 }])
})
