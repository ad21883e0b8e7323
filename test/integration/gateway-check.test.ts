/**
 * `gateway check --data-dir DIR` on real LevelDB stores: a healthy store checks clean, and
 * each tampered copy (a window ahead of its items, an item above its partition's counter,
 * a wrong count, a window that does not claim a buffered item, a wrong dead-letter count)
 * fails naming the problem; a directory that is not a store and a locked store get their
 * own exit codes.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { Level } from 'level'
import pino from 'pino'
import { encodeCbor, encodeItemFast } from '../../protocol/index.ts'
import { DedupWindow, Store } from '../../gateway/store/index.ts'
import { storeDefaults } from '../../gateway/store/config.ts'
import { K } from '../../gateway/store/keys.ts'
import { runCli } from '../helpers/cli.ts'
import { tempDir } from '../helpers/index.ts'

const log = pino({ level: 'silent' })
type T = { after: (fn: () => unknown) => void }

const check = (t: T, dir: string): ReturnType<typeof runCli> => runCli(t, 'gateway/main.ts', ['check', '--data-dir', dir], 120_000)

/** A stopped gateway's store: dev-a seqs 1..3 buffered with its window, a dead letter. */
async function healthy (t: T): Promise<string> {
  const dir = join(await tempDir(t, 'gateway-check-'), 'healthy')
  const store = await Store.open({ ...storeDefaults(), dataDir: dir, partitions: 1, durability: 'process' }, log)
  const w = new DedupWindow()
  const done: Array<Promise<void>> = []
  for (const seq of [1, 2, 3]) {
    w.check(1, seq)
    store.dedup.changed('dev-a', w)
    const s = store.nextSeq(0)
    done.push(new Promise((resolve, reject) => store.append({ p: 0, s, raw: encodeItemFast(0, s, 'dev-a', seq, 1, null, Date.now(), { t: seq }), settled: (err) => err ? reject(err) : resolve() })))
  }
  done.push(new Promise((resolve, reject) => store.deadLetter({ kind: 'payload', reason: 'not a reading', at: Date.now(), raw: Buffer.from('21.5'), device: 'dev-b' }, (err) => err ? reject(err) : resolve())))
  await Promise.all(done)
  await store.close()
  return dir
}

/** A copy of `dir` changed through LevelDB directly. */
async function tampered (t: T, dir: string, name: string, change: (db: Level<string, Buffer>) => Promise<void>): Promise<string> {
  const copy = join(dir, '..', name)
  cpSync(dir, copy, { recursive: true })
  const db = new Level<string, Buffer>(copy, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
  await db.open()
  try { await change(db) } finally { await db.close() }
  return copy
}

test('gateway check: a healthy store is consistent; each tampered copy fails naming its problem', async (t) => {
  const dir = await healthy(t)
  const ok = await check(t, dir)
  assert.equal(ok.code, 0, ok.stdout + ok.stderr)
  assert.equal(ok.stdout, '')
  assert.match(ok.stderr, /1 partitions, 3 items, 1 dead letters, 1 dedup windows, 0 evicted ranges: consistent/)

  const cases: Array<[string, (db: Level<string, Buffer>) => Promise<void>, RegExp]> = [
    ['window-ahead', async (db) => {
      // the window claims seqs 4 and 5, whose items no batch wrote (the partition's last seq is dev-a's seq 3)
      const w = DedupWindow.decode((await db.get(K.dedup('dev-a')))!)
      w.check(1, 4); w.check(1, 5)
      await db.put(K.dedup('dev-a'), w.encode())
    }, /device dev-a: dedup window claims boot 1 seq 4-5 above its newest item \(seq 3, partition 0 seq 2, the partition's last\), whose items were never written/],
    ['item-above-counter', async (db) => {
      await db.put(K.item(0, 7), encodeItemFast(0, 7, 'dev-c', null, null, null, 1, { t: 1 }))
    }, /partition 0: item seq 7 at or above the partition counter 3/],
    ['wrong-count', async (db) => {
      await db.put(K.counter(0), encodeCbor([3, 4, 999]))
    }, /partition 0: counter says 4 items, 3 on disk[\s\S]*partition 0: counter says 999 bytes/],
    ['window-behind', async (db) => {
      // a window that lost seq 2: its buffered item would be stored again on a resend
      const w = new DedupWindow()
      w.check(1, 1); w.check(1, 3)
      await db.put(K.dedup('dev-a'), w.encode())
    }, /device dev-a: buffered item \(partition 0 seq 1\) of boot 1 seq 2 is not claimed by the device's dedup window/],
    ['dlq-count', async (db) => {
      await db.del(K.dlq(0))
    }, /dead letters: m!dlq says 1 records, 0 on disk/]
  ]
  for (const [name, change, expected] of cases) {
    const copy = await tampered(t, dir, name, change)
    const r = await check(t, copy)
    assert.equal(r.code, 1, `${name}: ${r.stdout}${r.stderr}`)
    assert.match(r.stdout, expected, name)
    assert.match(r.stderr, /problem/, name)
  }
})

test('gateway check: not a store exits 4, a store locked by a running gateway exits 3', async (t) => {
  const empty = join(await tempDir(t, 'gateway-check-'), 'nothing')
  mkdirSync(empty)
  const r = await check(t, empty)
  assert.equal(r.code, 4, r.stderr)
  const dir = await healthy(t)
  const db = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
  await db.open()
  t.after(() => db.close())
  const locked = await check(t, dir)
  assert.equal(locked.code, 3, locked.stderr)
  assert.match(locked.stderr, /locked/)
})
