/**
 * The command store contract against PostgresCommandStore on a throwaway server (one per
 * file, a fresh database per test; fails, never skips, without PostgreSQL), and what only
 * the PostgreSQL store has: text it cannot hold refused naming the field, several
 * processes (pools) on one database, the schema's keys.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import pg from 'pg'
import { PostgresCommandStore } from '../../ingest/commands/postgres-store.ts'
import { PostgresSink } from '../../ingest/sinks/postgres.ts'
import { MIGRATIONS } from '../../ingest/sinks/postgres-schema.ts'
import { freshDatabase } from '../helpers/postgres.ts'
import { commandStoreContract, newCommand } from './command-store-contract.ts'

commandStoreContract('postgres', async () => {
  const url = await freshDatabase()
  return {
    store: await PostgresCommandStore.open({ url, poolMax: 4 }),
    reopen: () => PostgresCommandStore.open({ url, poolMax: 4 }),
    cleanup: async () => {}
  }
})

test('postgres commands: text PostgreSQL cannot hold is refused with a ValidationError naming the field, and nothing is written', async (t) => {
  const store = await PostgresCommandStore.open({ url: await freshDatabase(), poolMax: 2 })
  t.after(() => store.close())
  const refused = (field: string) => (err: Error & { field?: string }): boolean => err.name === 'ValidationError' && err.field === field
  await assert.rejects(store.create(newCommand('c1', { args: { note: 'a\u0000b' } })), refused('args.note'))
  await assert.rejects(store.create(newCommand('c1', { args: [{ ok: 1 }, 'x\uD800'] })), refused('args[1]'))
  await assert.rejects(store.create(newCommand('c1', { args: { 'k\u0000': 1 } })), refused('args key'))
  await assert.rejects(store.create(newCommand('c1', { idempotencyKey: 'k\u0000' })), refused('idempotencyKey'))
  assert.equal(await store.get('c1'), null)
  const ok = await store.create(newCommand('c1'))
  assert.equal(ok.record.n, 1, 'the refused creates took no n')
  await assert.rejects(store.update(['c1'], (cur) => [{ ...cur[0]!, state: 'completed', result: { out: '\u0000' } }]), refused('result.out'))
  await assert.rejects(store.update(['c1'], (cur) => [{ ...cur[0]!, state: 'rejected', error: 'bad\u0000' }]), refused('error'))
  assert.deepStrictEqual(await store.get('c1'), ok.record, 'nothing written')
  await assert.rejects(store.setPresence('f1', 'gw\u0000', [], false, 1), refused('gateway'))
  assert.equal(await store.get('c\u0000'), null, 'an id it cannot hold is simply unknown')
  assert.deepEqual(await store.update(['c\u0000'], (cur) => cur), [null])
})

test('postgres commands: several ingest processes on one database: one key makes one command, n stays per device without gaps', async (t) => {
  const url = await freshDatabase()
  const stores = await Promise.all(Array.from({ length: 3 }, () => PostgresCommandStore.open({ url, poolMax: 3 })))
  t.after(async () => { for (const s of stores) await s.close() })
  const results = await Promise.all(Array.from({ length: 18 }, (_, i) =>
    stores[i % 3]!.create(newCommand(`r${i}`, { device: `d${i % 2}`, idempotencyKey: 'one' }))))
  assert.equal(results.filter((r) => r.created).length, 1)
  assert.equal(new Set(results.map((r) => r.record.id)).size, 1)
  const made = await Promise.all(Array.from({ length: 18 }, (_, i) => stores[i % 3]!.create(newCommand(`n${i}`, { device: 'dn' }))))
  assert.deepEqual(made.map((r) => r.record.n).sort((a, b) => a - b), Array.from({ length: 18 }, (_, i) => i + 1), 'concurrent creates of one device: n 1..18, no gap, no repeat')
  await Promise.all(Array.from({ length: 9 }, (_, i) => stores[i % 3]!.update(['n0'], (cur) => [{ ...cur[0]!, args: { count: ((cur[0]!.args as { count?: number }).count ?? 0) + 1 } }])))
  assert.deepEqual((await stores[2]!.get('n0'))!.args, { count: 9 }, 'updates from several processes are serialised by the row lock')
})

test('postgres commands: the sink and the command store share one schema; every unique key of the command tables holds device or is the id, but the idempotency key', async (t) => {
  const url = await freshDatabase()
  const [sink, store] = await Promise.all([PostgresSink.open({ url, poolMax: 2 }), PostgresCommandStore.open({ url, poolMax: 2 })])
  t.after(async () => { await store.close(); await sink.close() })
  const c = new pg.Client({ connectionString: url })
  await c.connect()
  t.after(() => c.end())
  assert.deepEqual((await c.query('SELECT version FROM schema_migrations ORDER BY version')).rows, MIGRATIONS.map((m) => ({ version: m.version })))
  const { rows } = await c.query<{ name: string, cols: string[] }>(`
    SELECT i.indexrelid::regclass::text AS name, array_agg(a.attname::text ORDER BY a.attname) AS cols
    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
    WHERE i.indrelid IN ('commands'::regclass, 'command_device_counters'::regclass, 'command_presence'::regclass) AND i.indisunique GROUP BY 1 ORDER BY 1`)
  assert.deepEqual(rows.map((r) => r.name), ['command_device_counters_pkey', 'command_presence_pkey', 'commands_device_n', 'commands_idempotency', 'commands_pkey'])
  for (const r of rows) {
    if (r.name === 'commands_idempotency') { assert.deepEqual(r.cols, ['fleet', 'idempotency_key']); continue }
    assert.ok(r.cols.includes('device') || r.cols.join() === 'id', `${r.name} (${r.cols.join(', ')}) holds device or is the id`)
  }
})
