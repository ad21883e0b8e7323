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

/** Turns a layout-4 store into an older layout: reading values without their fleet, an n! index (layouts 2 and 3), the format marker. */
async function downgrade (dir: string, layout: '1' | '2' | '3'): Promise<string[]> {
  const db = new Level<string, string>(dir)
  const index: string[] = []
  try {
    for await (const [k, v] of db.iterator({ gte: 'r!', lt: 'r"' })) {
      const fields = JSON.parse(v) as unknown[]
      assert.equal(fields.length, 8, 'a layout-4 value names its fleet')
      const fleet = fields.pop() as string
      await db.put(k, JSON.stringify(fields))
      const [, device, bk, sk] = k.split('!')
      if (layout !== '1' && sk!.startsWith('0')) {
        const nk = layout === '2' ? `n!${device!}!${bk!}!${sk!.slice(1)}` : `n!${Buffer.from(fleet).toString('hex')}!${device!}!${bk!}!${sk!.slice(1)}`
        await db.put(nk, '')
        index.push(nk)
      }
    }
    await db.put('m!format', layout)
  } finally { await db.close() }
  return index
}

for (const layout of ['1', '2', '3'] as const) {
  test(`leveldb: a layout-${layout} store opens as layout 4: no index keys left, its readings count for their gateway's fleet, the natural key still dedups`, async (t) => {
    const dir = join(await tempDir(t, 'ingest-sink-'), 'db')
    const first = await LevelDbSink.open({ dataDir: dir })
    await first.storeBatch(req([item(0, 1, { seq: 5 }), item(0, 2, { seq: null }), item(0, 3, { seq: 6, boot: 'b' })], { gateway: 'gw-north', fleet: 'north' }))
    await first.storeBatch(req([item(0, 1, { seq: 7 })], { gateway: 'gw-old' }))
    await first.close()
    const index = await downgrade(dir, layout)
    assert.equal(index.length, layout === '1' ? 0 : 3)
    const upgrades: string[] = []
    const again = await LevelDbSink.open({ dataDir: dir, fleetOf: (gw) => gw === 'gw-north' ? 'north' : 'default', onUpgrade: (from, n) => upgrades.push(`${from}:${n}`) })
    assert.deepEqual(upgrades, [`${layout}:${index.length}`])
    assert.deepEqual(await again.storeBatch(req([item(3, 9, { seq: 5 }), item(3, 10, { seq: 6, boot: 'b' }), item(3, 11, { seq: 8 })], { gateway: 'gw-north2', fleet: 'north' })),
      ['duplicate', 'duplicate', 'stored'], 'fleet north finds the readings of its gateway')
    assert.deepEqual(await again.storeBatch(req([item(3, 9, { seq: 5 })], { gateway: 'gw-south', fleet: 'south' })), ['stored'], 'another fleet does not')
    assert.deepEqual(await again.storeBatch(req([item(4, 1, { seq: 7 })], { gateway: 'gw-new' })), ['duplicate'], 'a gateway the config does not name is in fleet default')
    assert.deepEqual(await again.storeBatch(req([item(4, 2, { seq: 7, values: { t: 0 } })], { gateway: 'gw-new' })), ['conflict'], 'and other content is a conflict')
    await again.close()
    const check = new Level<string, string>(dir)
    t.after(() => check.close())
    assert.equal(await check.get('m!format'), '4')
    assert.deepEqual(await check.keys({ gte: 'n!', lt: 'n"' }).all(), [], 'no index key left')
  })
}

test('leveldb: a store of a newer layout is refused, saying what to do', async (t) => {
  const dir = join(await tempDir(t, 'ingest-sink-'), 'db')
  const first = await LevelDbSink.open({ dataDir: dir })
  await first.close()
  const db = new Level<string, string>(dir)
  await db.put('m!format', '9')
  await db.close()
  await assert.rejects(LevelDbSink.open({ dataDir: dir }), (err: Error) => err.name === 'StoreError' && /layout 9, written by a newer build; this build reads layouts 1 to 4: run the newer build/.test(err.message))
})

test('leveldb: a write that fails forgets the natural keys it applied: a copy sent after it is stored, not answered duplicate', async (t) => {
  // A failed group write leaves nothing on disk; if the natural-key window still held its
  // copies, a resend through another gateway would be answered duplicate of a reading that
  // does not exist, and deleted by its gateway: a loss.
  const sink = await LevelDbSink.open({ dataDir: join(await tempDir(t, 'ingest-sink-'), 'db') })
  t.after(() => sink.close())
  assert.deepEqual(await sink.storeBatch(req([item(0, 1, { seq: 1 })])), ['stored'], 'the head of dev1 is loaded')
  const db = (sink as unknown as { db: Level<string, string> }).db
  const batch = db.batch.bind(db)
  let failures = 1
  db.batch = ((...args: unknown[]) => {
    const b = (batch as (...a: unknown[]) => ReturnType<typeof db.batch>)(...args)
    if (args.length === 0 && failures > 0) {
      failures--
      b.write = async () => { throw Object.assign(new Error('injected: no space left on device'), { code: 'ENOSPC' }) }
    }
    return b
  }) as typeof db.batch
  await assert.rejects(sink.storeBatch(req([item(0, 2, { seq: 2 }), item(0, 3, { seq: 3 })])), (err: Error & { retryable?: boolean }) => err.name === 'StoreError' && err.retryable === true)
  assert.equal(failures, 0, 'the failure landed (not luck)')
  assert.deepEqual(await sink.storeBatch(req([item(4, 2, { seq: 2 }), item(4, 3, { seq: 3 })], { gateway: 'gw2' })), ['stored', 'stored'], 'the copies through another gateway are stored')
  assert.deepEqual(await sink.storeBatch(req([item(0, 2, { seq: 2 }), item(0, 3, { seq: 3 })])), ['duplicate', 'duplicate'], 'the failed request, resent: now a copy of what is stored')
  assert.deepEqual((await sink.queryDevice({ device: 'dev1', limit: 10 })).readings.map((r) => [r.seq, r.gateway]), [[1, 'gw1'], [2, 'gw2'], [3, 'gw2']])
})
