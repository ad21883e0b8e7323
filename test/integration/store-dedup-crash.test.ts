/**
 * A dedup window on disk must never claim a seq whose item is not durable in the same or an
 * earlier batch. The failure this guards: the writer put the live window object into the
 * batch only after awaiting reads (the drop-oldest eviction plan, the idle-window sweep);
 * meanwhile the intake checked the next seq against the same object and appended its item
 * to the NEXT cycle. A kill -9 once the first cycle was durable left a window that claimed
 * the next seq with no item: the device's resend was answered `duplicate`, acknowledged,
 * and the reading was gone.
 *
 * The kill is taken as a copy of the LevelDB directory made synchronously in the first
 * cycle's callback: nothing else can run in between, so the copy is exactly what was on
 * disk at that instant (LevelDB's log is written before the callback runs; the copy reads
 * it through the page cache, as a restart after kill -9 does).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { cpSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import { encodeItemFast } from '../../protocol/index.ts'
import { DedupWindow, Store, type StoreConfig } from '../../gateway/store/index.ts'
import { storeDefaults } from '../../gateway/store/config.ts'
import { tempDir } from '../helpers/index.ts'

const log = pino({ level: 'silent' })
const BOOT = 1

type Case = { name: string, over: Partial<StoreConfig>, before?: (store: Store) => Promise<void> }

const cases: Case[] = [
  { name: 'block (no await before the window is encoded)', over: { fullPolicy: 'block' } },
  // at quota, so the eviction plan reads the partition before the batch is built
  { name: 'drop-oldest at its quota', over: { fullPolicy: 'drop-oldest', maxBufferItems: 2 }, before: async (s) => { await appendDurable(s, 'other', 1); await appendDurable(s, 'other', 2) } },
  { name: 'a cycle that sweeps idle windows', over: { fullPolicy: 'block' }, before: async (s) => { await appendDurable(s, 'other', 1); s.dedup.sweep() } }
]

function append (store: Store, device: string, seq: number, settled: (err: Error | null) => void): void {
  const s = store.nextSeq(0)
  store.append({ p: 0, s, raw: encodeItemFast(0, s, device, seq, BOOT, 1, 1, { t: seq }), settled })
}

function appendDurable (store: Store, device: string, seq: number): Promise<void> {
  return new Promise((resolve, reject) => append(store, device, seq, (err) => err ? reject(err) : resolve()))
}

for (const c of cases) {
  test(`a window on disk never claims a seq whose item is not durable: ${c.name}`, async (t) => {
    const dir = await tempDir(t, 'store-dedup-crash-')
    const config: StoreConfig = { ...storeDefaults(), dataDir: join(dir, 'live'), partitions: 1, durability: 'process', ...c.over }
    const store = await Store.open(config, log)
    t.after(() => store.close())
    await c.before?.(store)

    // seq 1 checked and appended: its cycle is scheduled
    const w = new DedupWindow()
    assert.equal(w.check(BOOT, 1), 'new')
    store.dedup.changed('dev', w)
    let copied = false
    append(store, 'dev', 1, (err) => {
      assert.equal(err, null)
      // the instant seq 1's cycle is durable: what a kill -9 now would leave on disk
      cpSync(config.dataDir, join(dir, 'crashed'), { recursive: true })
      copied = true
    })
    // the write of seq 1's cycle starts in this turn's setImmediate; once it waits on a read,
    // seq 2 is checked against the same window object and goes to the next cycle
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(w.check(BOOT, 2), 'new')
    store.dedup.changed('dev', w)
    await appendDurable(store, 'dev', 2)
    assert.ok(copied, 'the copy was taken when seq 1 became durable')

    // restart from the copy: seq 2's item is not there, so its resend must be new
    const after = await Store.open({ ...config, dataDir: join(dir, 'crashed') }, log)
    t.after(() => after.close())
    const items = await after.readBatch(0, 100, 1 << 20)
    after.release(0)
    const devSeqs = items.raws.map((r) => r.toString('latin1')).filter((x) => x.includes('dev') && !x.includes('other')).length
    assert.equal(devSeqs, 1, 'only seq 1 of dev is on disk at the crash')
    const loaded = await after.dedup.read('dev')
    assert.ok(loaded, 'the window of seq 1 is on disk')
    assert.equal(loaded.check(BOOT, 2), 'new', 'the window on disk claims seq 2, whose item was never durable: its resend would be acknowledged as a duplicate and lost')
  })
}
