/**
 * Flash wear: the group commit's commit interval gathers the readings of a busy
 * spell into fewer fsyncs, never acknowledges a reading before the write that holds it, and
 * does not delay a lone reading; a cycle that only deletes answered items is not fsynced.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { encodeItemFast } from '../../protocol/index.ts'
import { Store, type StoreConfig } from '../../gateway/store/index.ts'
import { storeDefaults } from '../../gateway/store/config.ts'
import { tempDir } from '../helpers/index.ts'

const log = pino({ level: 'silent' })

async function openStore (t: { after: (fn: () => Promise<void>) => void }, over: Partial<StoreConfig> = {}): Promise<{ store: Store, writes: Array<{ sync: boolean, ops: number }> }> {
  const store = await Store.open({ ...storeDefaults(), dataDir: await tempDir(t as never, 'store-ci-'), partitions: 1, durability: 'power', maxBufferItems: 1_000_000, maxBufferBytes: 1 << 30, fullPolicy: 'block', ...over }, log)
  t.after(() => store.close())
  // record each group commit's LevelDB write: its sync option and size
  const writes: Array<{ sync: boolean, ops: number }> = []
  const batch = store.db.batch.bind(store.db)
  ;(store.db as unknown as { batch: () => unknown }).batch = () => {
    const b = batch()
    const write = b.write.bind(b)
    ;(b as unknown as { write: (o: { sync?: boolean }) => Promise<void> }).write = (o) => { writes.push({ sync: o.sync === true, ops: b.length }); return write(o) }
    return b
  }
  return { store, writes }
}

function append (store: Store, s: number): Promise<number> {
  return new Promise((resolve, reject) => {
    store.append({ p: 0, s, raw: encodeItemFast(0, s, 'dev', s, 1, 1, 1, { t: s }), settled: (err) => err ? reject(err) : resolve(performance.now()) })
  })
}

test('a commit interval gathers a busy spell into few fsyncs; each PUBACK still waits for its own write', async (t) => {
  const { store, writes } = await openStore(t, { commitIntervalMs: 300 })
  const t0 = performance.now()
  const first = await append(store, store.nextSeq(0))
  assert.ok(first - t0 < 250, `a lone reading is written at once, not after the interval (${(first - t0).toFixed(0)} ms)`)
  // 12 readings, one every 20 ms (240 ms in all), right after that write: they fall in the interval
  const done: Promise<number>[] = []
  const sentAt: number[] = []
  for (let i = 0; i < 12; i++) {
    sentAt.push(performance.now())
    done.push(append(store, store.nextSeq(0)))
    await new Promise((r) => setTimeout(r, 20))
  }
  const ackedAt = await Promise.all(done)
  const appendWrites = writes.filter((w) => w.ops > 0)
  assert.ok(appendWrites.length <= 3, `13 readings in ${appendWrites.length} writes (without the interval: one each)`)
  assert.ok(writes.every((w) => w.sync), 'every write that carries readings is fsynced (durability power)')
  // nothing is acknowledged before the interval since the first write has passed
  for (const a of ackedAt) assert.ok(a - first >= 250, `acknowledged ${(a - first).toFixed(0)} ms after the first write: the interval held it`)
  assert.ok(sentAt.length === ackedAt.length)
})

test('without a commit interval each reading that arrives alone gets its own write (the old behaviour)', async (t) => {
  const { store, writes } = await openStore(t, { commitIntervalMs: 0 })
  for (let i = 0; i < 5; i++) await append(store, store.nextSeq(0))
  assert.equal(writes.filter((w) => w.ops > 0).length, 5)
})

test('a cycle that only deletes answered items is written without fsync, one with readings with it', async (t) => {
  const { store, writes } = await openStore(t, { commitIntervalMs: 0 })
  await Promise.all([0, 1, 2, 3].map(() => append(store, store.nextSeq(0))))
  const b = await store.readBatch(0, 10, 1 << 20)
  store.release(0)
  writes.length = 0
  await store.settle(0, b.seqs.map((s, i) => ({ s, size: b.raws[i]!.length })), [])
  assert.equal(writes.length, 1)
  assert.equal(writes[0]!.sync, false, 'deletes alone are not fsynced (a lost delete only resends a duplicate)')
  assert.equal(store.partitionStats()[0]!.depth, 0)
  await append(store, store.nextSeq(0))
  assert.equal(writes.at(-1)!.sync, true, 'a reading is still fsynced')
  // a dead-lettered item is not a plain delete: it is fsynced
  const c = await store.readBatch(0, 10, 1 << 20)
  store.release(0)
  writes.length = 0
  await store.settle(0, [], [{ s: c.seqs[0]!, raw: c.raws[0]!, reason: 'test' }])
  assert.equal(writes[0]!.sync, true)
})
