/**
 * The store between an upstream answer and its durable delete: the flusher sends the next
 * batch of a partition without waiting for the delete's group commit, so until that commit
 * the answered items must be skipped by reads, left alone by eviction, kept below the floor,
 * and read again if the write fails.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import pino from 'pino'
import { encodeItemFast } from '../../protocol/index.ts'
import { itemCost, Store, type StoreConfig } from '../../gateway/store/index.ts'
import { storeDefaults } from '../../gateway/store/config.ts'
import { tempDir, waitFor } from '../helpers/index.ts'

const log = pino({ level: 'silent' })

async function openStore (t: { after: (fn: () => Promise<void>) => void }, over: Partial<StoreConfig> = {}): Promise<Store> {
  const store = await Store.open({ ...storeDefaults(), dataDir: await tempDir(t as never, 'store-settle-'), partitions: 1, durability: 'process', maxBufferItems: 1_000_000, maxBufferBytes: 1 << 30, fullPolicy: 'block', ...over }, log)
  t.after(() => store.close())
  return store
}

/** Appends n items to partition 0 and waits until they are durable; returns their seqs. */
async function fill (store: Store, n: number): Promise<number[]> {
  const seqs: number[] = []
  await Promise.all(Array.from({ length: n }, () => new Promise<void>((resolve, reject) => {
    const s = store.nextSeq(0)
    seqs.push(s)
    store.append({ p: 0, s, raw: encodeItemFast(0, s, 'dev', s, 1, 1, 1, { t: s }), settled: (err) => err ? reject(err) : resolve() })
  })))
  return seqs
}

test('answered items are skipped by the next read and kept above the floor until their delete is durable', async (t) => {
  const store = await openStore(t)
  await fill(store, 10)
  const first = await store.readBatch(0, 4, 1 << 20)
  assert.deepEqual(first.seqs, [0, 1, 2, 3])
  store.release(0)
  // the answer is in: 0..3 stored; the delete is queued, not yet written
  const durable = store.settle(0, first.raws.map((r, i) => ({ s: first.seqs[i]!, size: r.length })), [])
  assert.equal(store.partitionStats()[0]!.settling, 4)
  const second = await store.readBatch(0, 4, 1 << 20)
  assert.deepEqual(second.seqs, [4, 5, 6, 7], 'the next batch starts after the answered items, not at them')
  assert.equal(store.floor(0), 0, 'the floor stays below items whose delete is not durable')
  store.release(0)
  await durable
  assert.equal(store.partitionStats()[0]!.settling, 0)
  assert.equal(store.partitionStats()[0]!.depth, 6)
  assert.equal(store.floor(0), 4, 'the floor passes them once the delete is written')
  const third = await store.readBatch(0, 100, 1 << 20)
  assert.deepEqual(third.seqs, [4, 5, 6, 7, 8, 9])
  store.release(0)
})

test('a full batch is read even when answered items sit in front of it', async (t) => {
  const store = await openStore(t)
  await fill(store, 30)
  const a = await store.readBatch(0, 10, 1 << 20)
  store.release(0)
  const pending = store.settle(0, a.seqs.map((s, i) => ({ s, size: a.raws[i]!.length })), [{ s: 29, raw: Buffer.from([0]), reason: 'test' }])
  const b = await store.readBatch(0, 10, 1 << 20)
  assert.deepEqual(b.seqs, [10, 11, 12, 13, 14, 15, 16, 17, 18, 19])
  store.release(0)
  await pending
  const c = await store.readBatch(0, 100, 1 << 20)
  assert.deepEqual(c.seqs, Array.from({ length: 19 }, (_, i) => 10 + i), 'b was never answered: read again; the dead-lettered 29 is gone')
  store.release(0)
  assert.equal(store.dlqCount, 1)
})

test('drop-oldest never evicts an item whose delete is queued (it would be counted twice)', async (t) => {
  const store = await openStore(t, { fullPolicy: 'drop-oldest', maxBufferItems: 20 })
  await fill(store, 20)
  const a = await store.readBatch(0, 5, 1 << 20)
  store.release(0)
  const pending = store.settle(0, a.seqs.map((s, i) => ({ s, size: a.raws[i]!.length })), [])
  // 10 more: 30 written, 5 deleted, quota 20 -> 5 evicted, from 5 on (0..4 are being deleted)
  const evicted: number[][] = []
  store.on('evicted', (ranges) => { for (const r of ranges) evicted.push([...r]) })
  await fill(store, 10)
  await pending
  assert.equal(store.items, 20, 'exactly at the quota: nothing was subtracted twice')
  assert.deepEqual(evicted, [[0, 5, 9]])
  const rest = await store.readBatch(0, 100, 1 << 20)
  assert.deepEqual(rest.seqs, Array.from({ length: 20 }, (_, i) => 10 + i))
  store.release(0)
})

test('reads racing the delete commits never return an answered item twice', async (t) => {
  // the flusher's pattern: read, answer, queue the delete without waiting, read again; a
  // commit that lands while a read's snapshot is open must not let that read return its items
  const store = await openStore(t)
  const total = 6000
  await fill(store, total)
  const seen = new Set<number>()
  const durable: Promise<void>[] = []
  let reads = 0
  while (seen.size < total) {
    const b = await store.readBatch(0, 40, 1 << 20)
    store.release(0)
    reads++
    if (b.seqs.length === 0) { await new Promise((r) => setImmediate(r)); continue }
    for (const s of b.seqs) {
      assert.ok(!seen.has(s), `seq ${s} read again after it was answered (read ${reads})`)
      seen.add(s)
    }
    durable.push(store.settle(0, b.seqs.map((s, i) => ({ s, size: b.raws[i]!.length })), []))
  }
  await Promise.all(durable)
  assert.equal(store.items, 0)
  assert.equal(store.bytes, 0)
  assert.equal(store.partitionStats()[0]!.settling, 0)
  assert.equal(store.floor(0), total)
})

test('an emptied partition\'s floor passes every committed item, whatever order the deletes landed in', async (t) => {
  // The failure this guards (found by the acknowledgment-path simulation): deletes that
  // land out of order (a retried item answered after later ones) left the head, and so the
  // floor, below an empty partition. Only a read raised it, and an idle partition is never
  // read: a delivered-mode PUBACK waiting for the floor to pass its reading never came.
  const store = await openStore(t)
  await fill(store, 3)
  const floors: number[] = []
  store.on('floor', (_p, f) => floors.push(f))
  const raw = (await store.readBatch(0, 3, 1 << 20)).raws
  store.release(0)
  await store.settle(0, [{ s: 1, size: raw[1]!.length }, { s: 2, size: raw[2]!.length }], [])
  assert.equal(store.floor(0), 0, 'seq 0 is still on disk')
  await store.settle(0, [{ s: 0, size: raw[0]!.length }], [])
  assert.equal(store.partitionStats()[0]!.depth, 0)
  assert.equal(store.floor(0), 3, 'nothing is left on disk: the floor is past every committed seq')
  assert.equal(floors.at(-1), 3, 'and the floor event says so (the intake releases delivered-mode PUBACKs on it)')
})

/** The store's next batch write fails as a full disk would; the writes after it go through. */
function failNextWrite (store: Store): void {
  const realBatch = store.db.batch.bind(store.db)
  let failNext = true
  ;(store.db as { batch: () => unknown }).batch = () => {
    const b = realBatch()
    const write = b.write.bind(b)
    b.write = ((opts?: Parameters<typeof write>[0]) => {
      if (failNext) { failNext = false; return Promise.reject(new Error('IO error: No space left on device (test)')) }
      return write(opts ?? {})
    }) as typeof b.write
    return b
  }
}

test('a failed write gives back the room its readings had reserved (block)', async (t) => {
  // The failure this guards (found by the acknowledgment-path simulation): under
  // fullPolicy=block, readings appended to a cycle reserve room; when that write failed,
  // the reservation ended but nobody was told, so readings the intake held back for room
  // waited for a delete, which an empty buffer never makes: nothing was acknowledged again.
  const store = await openStore(t, { maxBufferItems: 2 })
  failNextWrite(store)
  let spaces = 0
  store.on('space', () => { spaces++ })
  const results = await Promise.all([0, 1].map(() => new Promise<Error | null>((resolve) => {
    const s = store.nextSeq(0)
    store.append({ p: 0, s, raw: encodeItemFast(0, s, 'dev', s, 1, 1, 1, { t: s }), settled: resolve })
  })))
  assert.ok(results.every((e) => e instanceof Error), 'both readings failed with the write')
  assert.equal(store.hasRoom(itemCost(10)), true, 'their room is back')
  assert.ok(spaces > 0, 'and the store said so (the intake admits readings waiting for room on it)')
})

test('a failed write takes back the extension of an evicted range (drop-oldest)', async (t) => {
  // The failure this guards (found by the acknowledgment-path simulation, seed 107918):
  // an eviction that extends the last evicted range does so in place before its write;
  // when the write failed, only new ranges were taken back, so the range stayed extended
  // over items still on disk: they were reported upstream as evicted and sent as well.
  const store = await openStore(t, { fullPolicy: 'drop-oldest', maxBufferItems: 2 })
  await fill(store, 2)
  await fill(store, 1) // seq 0 evicted: range [0, 0]
  assert.deepEqual(store.pendingEvicted(), [[0, 0, 0]])
  failNextWrite(store)
  await assert.rejects(fill(store, 1), /No space left/) // would evict seq 1: the write fails
  assert.deepEqual(store.pendingEvicted(), [[0, 0, 0]], 'the failed eviction is not counted')
  await waitFor(() => store.writeFailure === null, { timeoutMs: 10_000, what: 'the store reopened' })
  await fill(store, 1) // evicts seq 1 for real
  assert.deepEqual(store.pendingEvicted(), [[0, 0, 1]], 'one range, each seq once')
})
