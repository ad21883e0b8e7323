import assert from 'node:assert/strict'
import { test } from 'node:test'
import pg from 'pg'
import { PostgresSink } from '../../ingest/sinks/postgres.ts'
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
    assert.deepEqual((await c.query('SELECT version FROM schema_migrations')).rows, [{ version: 1 }])
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
  assert.equal(sink.ready(), true)
  await srv.kill9()
  await assert.rejects(sink.storeBatch(req([item(0, 2)])), (err: Error & { retryable?: boolean }) => err.name === 'StoreError' && err.retryable === true)
  assert.equal(sink.ready(), false, 'unready while the database is down')
  await assert.rejects(sink.storeBatch(req([item(0, 2)])), (err: Error & { retryable?: boolean }) => err.retryable === true, 'fails fast while down')
  await srv.restart()
  await waitFor(() => sink.ready(), { timeoutMs: 20_000, what: 'the sink reconnects' })
  assert.deepEqual(await sink.storeBatch(req([item(0, 1), item(0, 2)])), ['duplicate', 'stored'])
})
