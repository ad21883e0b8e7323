/**
 * Dedup windows on disk are bounded by `--max-dedup-devices`. Past it the
 * least recently written window is evicted (counted in gateway_dedup_evicted_total), valid
 * readings are never refused, and a restart recounts the windows and keeps the bound.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Store, DedupWindow } from '../../gateway/store/index.ts'
import { storeDefaults } from '../../gateway/store/config.ts'
import { K } from '../../gateway/store/keys.ts'
import { tempDir } from '../helpers/index.ts'
import { connectDevice, publish, silentLogger, startGateway } from '../helpers/gateway.ts'

type T = { after: (fn: () => unknown) => void }

async function windowsOnDisk (store: Store): Promise<string[]> {
  const out: string[] = []
  for await (const k of store.db.keys(K.range('d!'))) out.push(k.slice(2))
  return out
}

async function openStore (t: T, dataDir: string, maxDedupDevices: number): Promise<Store> {
  const s = await Store.open({ ...storeDefaults(), dataDir, maxDedupDevices }, silentLogger)
  t.after(() => s.close())
  return s
}

const flush = (s: Store): Promise<void> => new Promise((resolve, reject) => s.sync((err) => err ? reject(err) : resolve()))

/** Records a new reading (seq 1) of `device` at `seenAtS` in the store's current cycle. */
function save (s: Store, device: string, seenAtS: number): void {
  const w = new DedupWindow()
  w.check(1, 1)
  w.seenAtS = seenAtS
  s.dedup.changed(device, w)
}

const dev = (i: number): string => `dev-${String(i).padStart(2, '0')}`
const NOW = Math.floor(Date.now() / 1000)

test('past --max-dedup-devices the least recently written window is evicted; one cycle with more new devices than fit stays within the bound', async (t) => {
  const store = await openStore(t, await tempDir(t), 16)
  let evicted = 0
  store.on('dedupEvicted', (n) => { evicted += n })
  for (let i = 0; i < 16; i++) { save(store, dev(i), NOW); await flush(store) }
  assert.equal((await windowsOnDisk(store)).length, 16)
  assert.equal(evicted, 0)
  save(store, dev(0), NOW) // dev-00 is the most recently written now
  await flush(store)
  save(store, dev(16), NOW)
  await flush(store)
  const keys = await windowsOnDisk(store)
  assert.equal(keys.length, 16)
  assert.ok(keys.includes(dev(0)), 'the rewritten window is kept')
  assert.ok(!keys.includes(dev(1)), 'the least recently written window is evicted')
  assert.equal(evicted, 1)
  // 20 new devices in ONE cycle: all 16 older windows go, and 4 of the new are not written
  for (let i = 0; i < 20; i++) save(store, `new-${i}`, NOW)
  await flush(store)
  assert.equal((await windowsOnDisk(store)).length, 16)
  assert.equal(store.dedup.size, 16)
  assert.equal(evicted, 1 + 16 + 4)
})

test('a restart recounts the windows on disk and keeps the bound; a lower bound evicts the oldest readings first at startup', async (t) => {
  const dataDir = await tempDir(t)
  let store = await Store.open({ ...storeDefaults(), dataDir, maxDedupDevices: 20 }, silentLogger)
  // times against key order: dev-19 has the oldest reading, dev-00 the newest
  for (let i = 0; i < 20; i++) save(store, dev(i), NOW - i)
  await flush(store)
  await store.close()

  store = await Store.open({ ...storeDefaults(), dataDir, maxDedupDevices: 20 }, silentLogger)
  assert.equal(store.dedup.size, 20, 'recounted at startup')
  assert.equal(store.dedup.evictedAtOpen, 0)
  save(store, 'late-1', NOW)
  await flush(store)
  let keys = await windowsOnDisk(store)
  assert.equal(keys.length, 20)
  assert.ok(!keys.includes(dev(19)), 'the window with the oldest reading went first after the restart')
  await store.close()

  store = await openStore(t, dataDir, 16)
  assert.equal(store.dedup.evictedAtOpen, 4)
  keys = await windowsOnDisk(store)
  assert.equal(keys.length, 16)
  assert.equal(store.dedup.size, 16)
  assert.deepEqual(keys.filter((k) => k.startsWith('dev-')).sort(), Array.from({ length: 15 }, (_, i) => dev(i)), 'dev-15..dev-18 (the oldest) evicted')
})

test('gateway: N+k devices through an anyDevice mapping keep at most N windows on disk; an evicted device is still accepted', async (t) => {
  const gw = await startGateway(t, { maxDedupDevices: 16, dedupCacheDevices: 16, mappings: [{ topic: 'bulk/+device', format: 'json', seq: 'n', device: '{device}', value: 'value', values: null, separator: '_', ts: null, clientIdMustMatch: false, anyDevice: true }] })
  const c = await connectDevice(t, gw.mqttPort, 'bridge-1')
  for (let i = 0; i < 20; i++) {
    await publish(c, `bulk/${dev(i)}`, JSON.stringify({ n: 1, t: i }))
    assert.ok((await windowsOnDisk(gw.store)).length <= 16, `after ${i + 1} devices`)
  }
  assert.equal(gw.store.items, 20, 'every valid reading stored')
  assert.match(await gw.metrics.registry.getSingleMetricAsString('gateway_dedup_evicted_total'), /gateway_dedup_evicted_total 4$/m)
  assert.match(await gw.metrics.registry.getSingleMetricAsString('gateway_dedup_windows'), /gateway_dedup_windows 16$/m)
  assert.ok(!(await windowsOnDisk(gw.store)).includes(dev(0)), 'dev-00 was evicted')
  // evicted on disk and out of the (16-window) cache: a new reading is accepted, and a resend
  // of the old one is stored again (at least once, docs/store.md)
  await publish(c, `bulk/${dev(0)}`, JSON.stringify({ n: 2, t: 0 }))
  await publish(c, `bulk/${dev(0)}`, JSON.stringify({ n: 1, t: 0 }))
  assert.equal(gw.store.items, 22)
  assert.ok((await windowsOnDisk(gw.store)).length <= 16)
})
