/**
 * store/dedup-windows.ts on an in-memory stand-in for the LevelDB range: the bound on
 * windows on disk (`maxDedupDevices`) against the windows a cycle deletes anyway (idle
 * sweep, quarantine), and the LRU of windows in memory (`dedupCacheDevices`).
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import { Cycle } from '../../gateway/store/cycle.ts'
import type { Db } from '../../gateway/store/db.ts'
import { DedupWindow } from '../../gateway/store/dedup.ts'
import { DedupWindows } from '../../gateway/store/dedup-windows.ts'

/** A Db holding `n` windows d!w00.. with increasing reading times (w00 the oldest). */
function fakeDb (n: number): Db {
  const rows: Array<[string, Buffer]> = Array.from({ length: n }, (_, i) => {
    const w = new DedupWindow()
    w.check(1, 1)
    w.seenAtS = 1_000_000 + i
    return [`d!w${String(i).padStart(2, '0')}`, w.encode()]
  })
  return {
    iterator: () => (async function * () { yield * rows })(),
    batch: () => ({ del () {}, async write () {} }),
    get: async () => undefined
  } as unknown as Db
}

const log = pino({ level: 'silent' })

async function open (t: TestContext, onDisk: number, max: number, cacheDevices = 100): Promise<DedupWindows> {
  const w = await DedupWindows.open(fakeDb(onDisk), { dedupCacheDevices: cacheDevices, dedupIdleForgetMs: 7 * 24 * 3600 * 1000, maxDedupDevices: max }, log, () => {})
  t.after(() => w.stop())
  return w
}

/** A formed (sealed) cycle writing the windows of `devices` and quarantining those of `quarantined`. */
function cycle (devices: string[], quarantined: string[] = []): Cycle {
  const c = new Cycle()
  c.seal(new Map(devices.map((d) => [d, new DedupWindow()])), quarantined.map((d) => ({ key: `d!${d}`, raw: Buffer.alloc(0), reason: 'unreadable' })))
  return c
}

test('at the bound a new window evicts the oldest; a window the same cycle forgets or quarantines makes room instead', async (t) => {
  const b = await open(t, 16, 16)
  assert.equal(b.size, 16)
  assert.deepEqual(b.plan(cycle(['new-1']), []), { deletes: ['d!w00'], unwritten: null, removed: [], forgotten: 0, evicted: 1 })
  assert.deepEqual(b.plan(cycle(['new-1']), ['d!w05']), { deletes: ['d!w05'], unwritten: null, removed: ['w05'], forgotten: 1, evicted: 0 }, 'the swept window makes room')
  // a quarantined window written again in the same cycle: its count stays
  assert.deepEqual(b.plan(cycle(['w05'], ['w05']), []), { deletes: [], unwritten: null, removed: ['w05'], forgotten: 0, evicted: 0 })
  // an old window the cycle rewrites is not a victim
  assert.deepEqual(b.plan(cycle(['w00', 'new-1']), []).deletes, ['d!w01'])
  const c = cycle(['w00', 'new-1'])
  b.committed(c, b.plan(c, []))
  assert.equal(b.size, 16)
  assert.deepEqual(b.plan(cycle(['new-2', 'new-3']), []).deletes, ['d!w02', 'd!w03'], 'w00 moved to the young end')
})

test('more new windows in one cycle than the bound holds: the excess is not written and older copies go', async (t) => {
  const b = await open(t, 16, 16)
  const c = cycle(Array.from({ length: 18 }, (_, i) => `n${i}`))
  const p = b.plan(c, [])
  assert.equal(p.deletes.length, 16)
  assert.deepEqual([...p.unwritten!], ['n0', 'n1'])
  assert.equal(p.evicted, 18)
  b.committed(c, p)
  assert.equal(b.size, 16)
})

test('more windows on disk than the bound at startup: the oldest are evicted', async (t) => {
  const b = await open(t, 20, 16)
  assert.equal(b.size, 16)
  assert.equal(b.evictedAtOpen, 4)
  assert.deepEqual(b.plan(cycle(['x']), []).deletes, ['d!w04'], 'w00..w03 are gone')
})

/** The devices in memory, least recently used first. */
const order = (w: DedupWindows): string[] => [...(w as unknown as { cache: Map<string, DedupWindow> }).cache.keys()]

test('windows in memory are LRU: a device read since goes last, a pinned window is never evicted', async (t) => {
  const cache = await open(t, 0, 100, 10)
  const ws: DedupWindow[] = []
  for (let i = 0; i < 10; i++) ws.push(await cache.load(`d${i}`, 0))
  assert.ok(cache.get('d0'), 'd0 is used again: now the most recent')
  cache.changed('d1', ws[1]!) // a write carrying d1's window is not durable yet
  cache.changed('d1', ws[1]!)
  assert.equal(ws[1]!.pending, 1, 'a window is pinned once per cycle')
  await cache.load('d10', 0) // over the bound: evicts least recently used down to 9
  assert.equal(order(cache).includes('d0'), true, 'FIFO would have evicted d0, the first inserted')
  assert.equal(order(cache).includes('d1'), true, 'pinned by a pending write')
  assert.equal(order(cache).includes('d2'), false, 'least recently used and unpinned')
  assert.equal(cache.cached, 9)
  cache.writeFailed()
  assert.equal(ws[1]!.pending, 0, 'a failed write unpins the changes gathered behind it')
  assert.equal(cache.cached, 0, 'and every unpinned window is forgotten')
})

test('windows in memory are refreshed at most once a second: reads in the same second keep the order, a later second moves it again', async (t) => {
  const cache = await open(t, 0, 100, 10)
  for (let i = 0; i < 10; i++) await cache.load(`d${i}`, 0)
  cache.get('d0', 100)
  cache.get('d1', 100)
  cache.get('d0', 100) // same second: not moved again, so d1 stays the youngest
  cache.get('d2', 101)
  cache.get('d2', 101)
  await cache.load('d10', 0) // evicts the two least recently used: d3 and d4
  assert.deepEqual(order(cache), ['d5', 'd6', 'd7', 'd8', 'd9', 'd0', 'd1', 'd2', 'd10'])
  assert.equal(cache.cached, 9)
})
