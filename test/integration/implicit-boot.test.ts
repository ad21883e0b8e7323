/**
 * A device that sends `seq` without `boot` and reboots (seq 1-3, a new
 * connection, seq 1-4) lost the second run's repeats: PUBACKed and discarded as
 * duplicates. Now a seq at or below the high-water mark on a new connection opens an
 * implicit boot unless the reading is provably a resend (DUP flag, or the same bytes).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createIngest } from '../../ingest/index.ts'
import { Gateway, parseGatewayConfig } from '../../gateway/index.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { connectDevice, publish, silentLogger } from '../helpers/gateway.ts'

type T = { after: (fn: () => unknown) => void }

async function setup (t: T): Promise<{ url: string, start: () => Promise<Gateway> }> {
  const ing = await createIngest({ port: 0, host: '127.0.0.1', token: ['gw1:secret-pad-01234'], dataDir: await tempDir(t) })
  t.after(() => ing.close())
  const url = `http://127.0.0.1:${ing.port}`
  const dataDir = await tempDir(t)
  const start = async (): Promise<Gateway> => {
    const base = parseGatewayConfig({ argv: [], env: {} })
    const gw = await Gateway.create({ ...base, host: '127.0.0.1', mqttPort: 0, adminPort: 0, dataDir, upstream: [url], token: 'secret-pad-01234', lingerMs: 0 }, silentLogger)
    t.after(() => gw.close())
    return gw
  }
  return { url, start }
}

async function readings (url: string, device: string): Promise<Array<{ seq: number, boot: unknown, values: Record<string, number> }>> {
  const r = await fetch(`${url}/v1/devices/${device}/readings?limit=1000`)
  return ((await r.json()) as { readings: Array<{ seq: number, boot: unknown, values: Record<string, number> }> }).readings
}

const payload = (seq: number, v: number): string => JSON.stringify({ seq, values: { t: v } })

async function counts (gw: Gateway): Promise<string> {
  return gw.metrics.registry.getSingleMetricAsString('gateway_intake_readings_total')
}

test('a boot-less device that reboots (seq 1-3, new connection, seq 1-4) has all 7 readings stored', async (t) => {
  const { url, start } = await setup(t)
  const gw = await start()
  const a = await connectDevice(t, gw.mqttPort, 'nb-1')
  for (let s = 1; s <= 3; s++) await publish(a, 'devices/nb-1/readings', payload(s, 10 + s))
  await a.endAsync()
  const b = await connectDevice(t, gw.mqttPort, 'nb-1') // the device rebooted: seq restarts
  for (let s = 1; s <= 4; s++) await publish(b, 'devices/nb-1/readings', payload(s, 20 + s))
  const got = await waitFor(async () => { const r = await readings(url, 'nb-1'); return r.length >= 7 ? r : null }, { what: '7 readings at the ingest' })
  assert.equal(got.length, 7)
  const first = got.filter((r) => r.boot === null)
  const second = got.filter((r) => r.boot !== null)
  assert.deepEqual(first.map((r) => r.values.t).sort(), [11, 12, 13])
  assert.deepEqual(second.map((r) => r.values.t).sort(), [21, 22, 23, 24])
  assert.match(String(second[0]!.boot), /^~\d{15}$/)
  const m = await gw.metrics.registry.getSingleMetricAsString('gateway_intake_implicit_boots_total')
  assert.match(m, /gateway_intake_implicit_boots_total 1/)
})

test('a boot-less device resending after a reconnect is still deduplicated', async (t) => {
  const { url, start } = await setup(t)
  const gw = await start()
  const a = await connectDevice(t, gw.mqttPort, 'nb-2')
  for (let s = 1; s <= 3; s++) await publish(a, 'devices/nb-2/readings', payload(s, 10 + s))
  await a.endAsync()
  // the PUBACKs of 2 and 3 were lost: the client resends them (same bytes, DUP=0 as MQTT.js does), then goes on
  const b = await connectDevice(t, gw.mqttPort, 'nb-2')
  for (const s of [2, 3]) await publish(b, 'devices/nb-2/readings', payload(s, 10 + s))
  await publish(b, 'devices/nb-2/readings', payload(4, 14))
  const got = await waitFor(async () => { const r = await readings(url, 'nb-2'); return r.length >= 4 ? r : null }, { what: '4 readings at the ingest' })
  await waitFor(() => gw.store.items === 0, { what: 'flushed' })
  assert.deepEqual((await readings(url, 'nb-2')).map((r) => [r.boot, r.seq]), [[null, 1], [null, 2], [null, 3], [null, 4]])
  assert.equal(got.length, 4)
  assert.match(await counts(gw), /outcome="duplicate"} 2/)
})

test('after a gateway restart a DUP-flagged resend dedups; an unprovable one costs a duplicate, never a loss', async (t) => {
  const { url, start } = await setup(t)
  let gw = await start()
  const a = await connectDevice(t, gw.mqttPort, 'nb-3')
  for (let s = 1; s <= 3; s++) await publish(a, 'devices/nb-3/readings', payload(s, 10 + s))
  await a.endAsync()
  await gw.close()
  gw = await start() // fingerprints are gone; the dedup window (boot null, hw 3) is on disk
  const b = await connectDevice(t, gw.mqttPort, 'nb-3')
  await new Promise<void>((resolve, reject) => b.publish('devices/nb-3/readings', payload(3, 13), { qos: 1, dup: true }, (e) => e ? reject(e) : resolve()))
  await publish(b, 'devices/nb-3/readings', payload(4, 14))
  await b.endAsync()
  assert.match(await counts(gw), /outcome="duplicate"} 1/)
  const c = await connectDevice(t, gw.mqttPort, 'nb-3')
  await publish(c, 'devices/nb-3/readings', payload(4, 14)) // a resend without DUP: the fingerprint taken on the previous connection proves it
  await c.endAsync()
  assert.match(await counts(gw), /outcome="duplicate"} 2/)
  await gw.close()
  gw = await start()
  const d = await connectDevice(t, gw.mqttPort, 'nb-3')
  await publish(d, 'devices/nb-3/readings', payload(4, 14)) // no proof after a restart: new implicit boot
  const got = await waitFor(async () => { const r = await readings(url, 'nb-3'); return r.length >= 5 ? r : null }, { what: '5 readings at the ingest' })
  assert.deepEqual(got.filter((r) => r.boot === null).map((r) => r.seq), [1, 2, 3, 4])
  assert.equal(got.filter((r) => r.boot !== null).length, 1)
})
