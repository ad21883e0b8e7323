import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { Level } from 'level'
import { LevelDbSink } from '../../ingest/sinks/leveldb.ts'
import { tempDir } from '../helpers/index.ts'
import { item, req, runSinkContract } from './sink-contract.ts'

runSinkContract('leveldb', async (t) => {
  const dir = join(await tempDir(t, 'ingest-sink-'), 'db')
  return { open: () => LevelDbSink.open({ dataDir: dir }) }
})

test('leveldb: dedup state stays bounded as floors advance', async (t) => {
  const sink = await LevelDbSink.open({ dataDir: join(await tempDir(t, 'ingest-sink-'), 'db') })
  t.after(() => sink.close())
  const perBatch = 100
  let maxSeqs = 0
  for (let b = 0; b < 50; b++) {
    // The gateway's floor trails its head by one batch: everything older was acked.
    const items = Array.from({ length: perBatch }, (_, i) => item(b % 2, 1000 + b * perBatch + i))
    const floor = 1000 + Math.max(0, b - 2) * perBatch
    await sink.storeBatch(req(items, { floors: [[0, floor], [1, floor]] }))
    maxSeqs = Math.max(maxSeqs, sink.dedupState().seqs)
  }
  const st = sink.dedupState()
  assert.equal(st.partitions, 2)
  assert.ok(maxSeqs <= 3 * perBatch, `tracked seqs ${maxSeqs} stay within the gateway's window, not the 5000 stored`)
  assert.ok(st.runs <= 3, `runs ${st.runs}`)
  assert.equal((await sink.stats()).stored, 5000)
})

test('leveldb: a store opened twice is refused (LevelDB lock), with the path in the error', async (t) => {
  const dir = join(await tempDir(t, 'ingest-sink-'), 'db')
  const sink = await LevelDbSink.open({ dataDir: dir })
  t.after(() => sink.close())
  await assert.rejects(LevelDbSink.open({ dataDir: dir }), (err: Error) => err.name === 'StoreError' && err.message.includes(dir))
})

test('leveldb: a layout-1 store gets its natural-key index on open (a copy through another gateway is then a duplicate)', async (t) => {
  const dir = join(await tempDir(t, 'ingest-sink-'), 'db')
  const first = await LevelDbSink.open({ dataDir: dir })
  await first.storeBatch(req([item(0, 1, { seq: 5 }), item(0, 2, { seq: null })]))
  await first.close()
  // Turn it back into layout 1: no n! keys, format marker '1'.
  const db = new Level<string, string>(dir)
  for await (const k of db.keys({ gte: 'n!', lt: 'n"' })) await db.del(k)
  await db.put('m!format', '1')
  await db.close()
  const again = await LevelDbSink.open({ dataDir: dir })
  t.after(() => again.close())
  assert.deepEqual(await again.storeBatch(req([item(3, 9, { seq: 5 }), item(3, 10, { seq: 6 })], { gateway: 'gw2' })), ['duplicate', 'stored'])
})

test('leveldb: a layout-2 store (natural key without fleet) is upgraded on open: its readings count as fleet default', async (t) => {
  const dir = join(await tempDir(t, 'ingest-sink-'), 'db')
  const first = await LevelDbSink.open({ dataDir: dir })
  await first.storeBatch(req([item(0, 1, { seq: 5 }), item(0, 2, { seq: null }), item(0, 3, { seq: 6, boot: 'b' })]))
  await first.close()
  // Turn it back into layout 2: n!{device}!{bootKey}!{seq}, format marker '2'.
  const db = new Level<string, string>(dir)
  const old: string[] = []
  for await (const k of db.keys({ gte: 'n!', lt: 'n"' })) {
    const parts = k.split('!')
    assert.equal(parts.length, 5, `layout 3 n! key ${k}`)
    await db.batch([{ type: 'del', key: k }, { type: 'put', key: ['n', ...parts.slice(2)].join('!'), value: '' }])
    old.push(k)
  }
  assert.equal(old.length, 2)
  await db.put('m!format', '2')
  await db.close()
  const again = await LevelDbSink.open({ dataDir: dir })
  assert.deepEqual(await again.storeBatch(req([item(3, 9, { seq: 5 }), item(3, 10, { seq: 6, boot: 'b' }), item(3, 11, { seq: 7 })], { gateway: 'gw2' })),
    ['duplicate', 'duplicate', 'stored'], 'fleet default finds the old keys')
  assert.deepEqual(await again.storeBatch(req([item(3, 9, { seq: 5 })], { gateway: 'gw3', fleet: 'north' })), ['stored'], 'another fleet does not')
  await again.close()
  const check = new Level<string, string>(dir)
  t.after(() => check.close())
  assert.equal(await check.get('m!format'), '3')
  const keys: string[] = []
  for await (const k of check.keys({ gte: 'n!', lt: 'n"' })) keys.push(k)
  assert.ok(keys.every((k) => k.split('!').length === 5), `no layout-2 key left: ${keys.join(' ')}`)
  for (const k of old) assert.ok(keys.includes(k), `${k} rebuilt under fleet default`)
})
