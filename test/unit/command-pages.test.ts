// The operator pages' command data at the ingest: `Commands.recent` (the latest changed
// commands, newest first, of one fleet or all, bounded) and `pageCommands` (what /ui/live
// carries: counts by state for fleet * only, the recent commands of the token's fleet).
import assert from 'node:assert/strict'
import test, { type TestContext } from 'node:test'
import { Commands } from '../../ingest/commands/index.ts'
import { LevelDbCommandStore } from '../../ingest/commands/leveldb-store.ts'
import { pageCommands } from '../../ingest/page/index.ts'
import { tempDir } from '../helpers/index.ts'

async function rig (t: TestContext): Promise<{ c: Commands, clock: { t: number } }> {
  const store = await LevelDbCommandStore.open({ dataDir: await tempDir(t, 'cmd-pages-') })
  const clock = { t: 5_000_000 }
  const c = new Commands(store, {
    ttlMs: 60_000, maxTtlMs: 600_000, maxWaitMs: 5000, maxArgsBytes: 64, maxPendingPerDevice: 1000, rate: 100_000, presenceTtlMs: 90_000, expiryGraceMs: 10_000, sweepMs: 3_600_000, now: () => clock.t
  })
  t.after(async () => { await c.close(); await store.close() })
  return { c, clock }
}

test('Commands.recent: newest change first, one fleet only, bounded by limit and window', async (t) => {
  const { c, clock } = await rig(t)
  await c.applyReports('gwN', 'north', { reports: [], presence: [['n1', 1, clock.t]] })
  await c.applyReports('gwS', 'south', { reports: [], presence: [['s1', 1, clock.t]] })
  const old = await c.create('n1', { name: 'ping' }, { fleet: 'north', caller: 'a' })
  clock.t += 20 * 60_000 // 20 min later: `old` is outside the 10 min window
  const ids: string[] = []
  for (let i = 0; i < 5; i++) {
    clock.t += 1000
    ids.push((await c.create('n1', { name: 'ping' }, { fleet: 'north', caller: 'a' })).record.id)
    clock.t += 1000
    await c.create('s1', { name: 'ping' }, { fleet: 'south', caller: 'b' })
  }
  // the first one changes last: it goes to the top
  clock.t += 1000
  const [r] = await c.applyReports('gwN', 'north', { reports: [[ids[0]!, 'n1', 'at-gateway', clock.t]], presence: [] })
  assert.equal(r?.[1], 0)

  const north = await c.recent('north', 50)
  assert.equal(north.windowMs, 600_000)
  assert.deepEqual(north.commands.map((x) => x.id), [ids[0], ids[4], ids[3], ids[2], ids[1]], 'newest change first, no south command, not the one changed 20 min ago')
  assert.ok(!north.commands.some((x) => x.id === old.record.id))
  assert.equal(north.commands[0]!.state, 'at-gateway')
  assert.deepEqual((await c.recent('north', 2)).commands.map((x) => x.id), [ids[0], ids[4]])
  const all = await c.recent('*', 50)
  assert.equal(all.commands.length, 10)
  assert.deepEqual(new Set(all.commands.map((x) => x.fleet)), new Set(['north', 'south']))
  assert.deepEqual((await c.recent('west', 50)).commands, [])
})

test('Commands.recent: a window with more changes than a page falls back to a shorter one', async (t) => {
  const { c, clock } = await rig(t)
  await c.applyReports('gwN', 'north', { reports: [], presence: [['n1', 1, clock.t]] })
  await c.applyReports('gwN', 'north', { reports: [], presence: [['n2', 1, clock.t]] })
  // 520 commands (over the 500 a page holds) spread over 9 minutes, then 3 in the last 5 s
  for (let i = 0; i < 520; i++) {
    clock.t += 1000
    await c.create(i % 2 ? 'n1' : 'n2', { name: 'ping', ttlMs: 600_000 }, { fleet: 'north', caller: 'a' })
  }
  const last: string[] = []
  for (let i = 0; i < 3; i++) { clock.t += 1500; last.push((await c.create('n1', { name: 'ping' }, { fleet: 'north', caller: 'a' })).record.id) }
  const r = await c.recent('north', 3)
  assert.equal(r.windowMs, 60_000)
  assert.deepEqual(r.commands.map((x) => x.id), last.reverse())
})

test('pageCommands: counts by state for fleet * only; a fleet sees only its commands', async (t) => {
  const { c, clock } = await rig(t)
  await c.applyReports('gwN', 'north', { reports: [], presence: [['n1', 1, clock.t]] })
  await c.applyReports('gwS', 'south', { reports: [], presence: [['s1', 1, clock.t]] })
  const n = await c.create('n1', { name: 'set-interval', args: { seconds: 5 } }, { fleet: 'north', caller: 'a' })
  clock.t += 10
  await c.create('s1', { name: 'reboot' }, { fleet: 'south', caller: 'b' })
  const all = await pageCommands(c, '*')
  assert.equal(all.counts?.queued, 2)
  assert.equal(all.counts?.completed, 0)
  assert.equal(all.recent.length, 2)
  const north = await pageCommands(c, 'north')
  assert.equal(north.counts, null, 'the store counts every fleet: not for a fleet-bound token')
  assert.deepEqual(north.recent, [{ id: n.record.id, device: 'n1', name: 'set-interval', state: 'queued', gateway: 'gwN', history: 1, createdAt: n.record.createdAt, updatedAt: n.record.updatedAt, expiresAt: n.record.expiresAt }])
  assert.deepEqual((await pageCommands(c, 'south')).recent.map((x) => x.device), ['s1'])
})
