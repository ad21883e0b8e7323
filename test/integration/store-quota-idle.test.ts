/**
 * Two store bounds that keep a hostile or forgetful fleet from filling the disk: the dead-letter quota (`--max-dlq-items`/`--max-dlq-bytes`,
 * drop-oldest, counted in gateway_dlq_dropped_total and logged) and the dedup state of
 * devices idle past `--dedup-idle-forget-ms`, forgotten in memory and on disk.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { K } from '../../gateway/store/keys.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'

/** An invalid reading (no values) whose raw bytes carry `tag`. */
const invalid = (tag: string): string => JSON.stringify({ seq: 1, tag, values: {} })

test('dead-letter quota by items: the oldest records are dropped, counted and logged; the count survives a restart', async (t) => {
  const dataDir = await tempDir(t)
  let gw = await startGateway(t, { dataDir, maxDlqItems: 5 })
  const c = await connectDevice(t, gw.mqttPort, 'dlq-1')
  for (let i = 1; i <= 8; i++) await publish(c, 'devices/dlq-1/readings', invalid(`r${i}`))
  assert.equal(gw.store.dlqCount, 5)
  const tags = (await gw.store.deadLetters()).map((d) => (JSON.parse(Buffer.from(d.raw).toString()) as { tag: string }).tag)
  assert.deepEqual(tags, ['r4', 'r5', 'r6', 'r7', 'r8'], 'the newest five are kept')
  const m = await gw.metrics.registry.getSingleMetricAsString('gateway_dlq_dropped_total')
  assert.match(m, /gateway_dlq_dropped_total 3/)
  const bytes = gw.store.dlqBytes
  await c.endAsync()
  await gw.close()
  gw = await startGateway(t, { dataDir, maxDlqItems: 5 })
  assert.equal(gw.store.dlqCount, 5, 'count recovered')
  assert.equal(gw.store.dlqBytes, bytes, 'bytes recovered')
})

test('dead-letter quota by bytes: a record that does not fit drops the oldest', async (t) => {
  const gw = await startGateway(t, { maxDlqBytes: 1024 })
  const c = await connectDevice(t, gw.mqttPort, 'dlq-2')
  const pad = 'x'.repeat(150)
  for (let i = 1; i <= 10; i++) await publish(c, 'devices/dlq-2/readings', JSON.stringify({ seq: 1, tag: `b${i}`, pad, values: {} }))
  assert.ok(gw.store.dlqBytes <= 1024, `dlq bytes ${gw.store.dlqBytes}`)
  assert.ok(gw.store.dlqCount >= 1 && gw.store.dlqCount < 10, `dlq count ${gw.store.dlqCount}`)
  let onDisk = 0
  for await (const _ of gw.store.db.keys({ gt: 'x!', lt: 'x"' })) onDisk++
  assert.equal(onDisk, gw.store.dlqCount, 'records on disk match the count')
  const last = (await gw.store.deadLetters()).at(-1)!
  assert.match(Buffer.from(last.raw).toString(), /"tag":"b10"/, 'the newest is kept')
})

test('a device idle past --dedup-idle-forget-ms loses its dedup state in memory and on disk; an active one keeps it', async (t) => {
  const dataDir = await tempDir(t)
  const gw = await startGateway(t, { dataDir, dedupIdleForgetMs: 2000 })
  const idle = await connectDevice(t, gw.mqttPort, 'idle-1')
  const active = await connectDevice(t, gw.mqttPort, 'active-1')
  for (let i = 1; i <= 3; i++) await publish(idle, 'devices/idle-1/readings', reading(i))
  await publish(active, 'devices/active-1/readings', reading(1))
  await publish(idle, 'devices/idle-1/readings', reading(2))
  assert.equal(gw.store.items, 4, 'a resend within the idle time is a duplicate')
  // seenAt has a resolution of one second: idle means more than two full seconds later;
  // meanwhile active-1 sends a new reading every 300 ms
  const t0 = Math.floor(Date.now() / 1000)
  let seq = 1
  while (Math.floor(Date.now() / 1000) - t0 <= 2) {
    await publish(active, 'devices/active-1/readings', reading(++seq))
    await new Promise((r) => setTimeout(r, 300)) // pacing, not a wait for a condition
  }
  gw.store.dedup.sweep()
  await waitFor(async () => await gw.store.db.get(K.dedup('idle-1')) === undefined, { timeoutMs: 5000, what: 'the idle device\'s window deleted on disk' })
  assert.ok(await gw.store.db.get(K.dedup('active-1')), 'the active device keeps its window on disk')
  // the idle device's resend of seq 2 is taken as new: its state is gone from memory too
  const before = gw.store.items
  await publish(idle, 'devices/idle-1/readings', reading(2))
  assert.equal(gw.store.items, before + 1)
  await publish(active, 'devices/active-1/readings', reading(1))
  assert.equal(gw.store.items, before + 1, 'the active device\'s resend is still a duplicate')
})
