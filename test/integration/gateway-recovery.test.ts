/**
 * Startup recovery (docs/design.md section 5): unreadable entries are quarantined or
 * rebuilt and reported, never a crash loop.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Level } from 'level'
import { partitionOf } from '../../protocol/index.ts'
import { K } from '../../gateway/store/keys.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { startFakeUpstream } from '../helpers/fake-upstream.ts'

/** Opens the store's LevelDB of a closed gateway, runs `fn` (tampering), closes it. */
async function withClosedStore (dir: string, fn: (db: Level<string, Buffer>) => Promise<unknown>): Promise<void> {
  const db = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
  await db.open()
  try { await fn(db) } finally { await db.close() }
}

test('a corrupt counter is rebuilt, a corrupt dedup window quarantined, a corrupt item dead-lettered', async (t) => {
  const dir = await tempDir(t)
  let gw = await startGateway(t, { dataDir: dir })
  const c = await connectDevice(t, gw.mqttPort, 'rec-1')
  for (let i = 1; i <= 10; i++) await publish(c, 'devices/rec-1/readings', reading(i))
  await c.endAsync()
  const p = partitionOf('rec-1', 8)
  await gw.close()

  const db = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
  await db.open()
  await db.put(K.counter(p), Buffer.from([0xff, 0x00]))
  await db.put(K.dedup('rec-1'), Buffer.from('not cbor at all'))
  await db.put(K.item(p, 3), Buffer.from([0x88, 0x01])) // truncated item
  await db.close()

  const up = await startFakeUpstream(t)
  gw = await startGateway(t, { dataDir: dir, upstream: [up.url], token: 't-pad-0123456789', lingerMs: 0 })
  assert.equal(gw.store.items, 10, 'counter rebuilt from the partition')
  assert.equal(gw.store.partitionStats()[p]!.nextSeq, 10, 'next seq continues after the highest item')
  await waitFor(() => gw.store.items === 0 && up.stored.size === 9, { what: '9 readable items delivered' })
  assert.equal(gw.store.dlqCount, 1)
  const [dl] = await gw.store.deadLetters()
  assert.equal(dl!.s, 3)
  assert.match(dl!.reason, /unreadable item in store/)
  // the device goes on; its unreadable window was quarantined, a new one starts
  const c2 = await connectDevice(t, gw.mqttPort, 'rec-1')
  await publish(c2, 'devices/rec-1/readings', reading(11))
  await waitFor(() => up.stored.size === 10)
  const q = await gw.store.db.keys({ gt: 'q!', lt: 'q"' }).all()
  assert.equal(q.length, 1, 'the unreadable dedup window is kept in quarantine')
})

test('the window that replaces a quarantined one is on disk after a restart', async (t) => {
  // the quarantine of an unreadable window and the new window were written in one batch,
  // the delete after the put: the new window was lost and a resend after a restart stored twice
  const dir = await tempDir(t)
  let gw = await startGateway(t, { dataDir: dir })
  await gw.close()
  await withClosedStore(dir, (db) => db.put(K.dedup('q-1'), Buffer.from('not cbor at all')))
  gw = await startGateway(t, { dataDir: dir })
  const c = await connectDevice(t, gw.mqttPort, 'q-1')
  // one reading: its window is saved in the cycle that quarantines the unreadable one
  await publish(c, 'devices/q-1/readings', reading(1))
  await c.endAsync()
  await gw.close()
  gw = await startGateway(t, { dataDir: dir })
  assert.ok(await gw.store.db.get(K.dedup('q-1')), 'the new window is on disk')
  const c2 = await connectDevice(t, gw.mqttPort, 'q-1')
  await publish(c2, 'devices/q-1/readings', reading(1))
  assert.equal(gw.store.items, 1, 'the resend is a duplicate')
})

test('a store whose identity is unreadable is refused with a clear error, not guessed', async (t) => {
  const dir = await tempDir(t)
  const gw = await startGateway(t, { dataDir: dir })
  await gw.close()
  await withClosedStore(dir, async (db) => {
    await db.put(K.partitions, Buffer.from('eight'))
  })
  await assert.rejects(startGateway(t, { dataDir: dir }), /unreadable identity/)
})
