/**
 * Clock jumps (docs/design.md section 3 `ts`, section 6 retry, section 10 invariant 4).
 *
 * - A device's `ts` is data, not a clock the system runs on: 0 (a device that never set
 *   its clock), the year 2100, 2^53-1, and a device clock going backwards between seqs are
 *   stored as given, end to end through the real gateway and ingest CLIs, and order stays
 *   (boot, seq).
 * - The gateway's wall clock jumping (NTP stepping a Pi that booted with a stale clock,
 *   forward or back by a day, repeatedly) changes nothing about linger, retry backoff or
 *   Retry-After waits: those run on monotonic time (performance.now, setTimeout).
 * - A jump back during an upstream auth pause must not park flushing for the size of the
 *   jump (the pause is measured on the monotonic clock).
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { AckCode, encodeCbor, partitionOf, wireUint, type ItemResult } from '../../protocol/index.ts'
import { fetchReadings } from '../../device-sim/index.ts'
import { spawnCli, tempDir, waitFor } from '../helpers/index.ts'
import { connectDevice, publish, startGateway } from '../helpers/gateway.ts'
import { startFakeUpstream } from '../helpers/fake-upstream.ts'

const TOKEN = 'clock-secret-pad'

test('device ts of 0, the year 2100, 2^53-1 and a clock going backwards are stored as given, in seq order', async (t) => {
  const dir = await tempDir(t, 'faults-clock-')
  const ingest = await spawnCli(t, 'ingest/main.ts', ['--port', '0', '--data-dir', join(dir, 'ingest'), '--token', `gw1:${TOKEN}`])
  const ingestUrl = `http://127.0.0.1:${String(ingest.ready.port)}`
  const gw = await spawnCli(t, 'gateway/main.ts', ['--gateway-id', 'gw1', '--data-dir', join(dir, 'gw'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--upstream', ingestUrl, '--token', TOKEN, '--linger-ms', '20'])
  const y2100 = Date.UTC(2100, 0, 1)
  const now = Date.now()
  const tss = [0, y2100, Number.MAX_SAFE_INTEGER, now, now - 86_400_000, 1, now - 365 * 86_400_000, y2100 - 1]
  const c = await connectDevice(t, gw.ready.mqttPort as number, 'clock-1')
  for (let i = 0; i < tss.length; i++) {
    await publish(c, 'devices/clock-1/readings', encodeCbor({ seq: i + 1, boot: 3, ts: wireUint(tss[i]!), values: { i } }))
  }
  // and JSON, where 2100 is just a number
  await publish(c, 'devices/clock-1/readings', JSON.stringify({ seq: tss.length + 1, boot: 3, ts: y2100 + 1, values: { i: tss.length } }))
  tss.push(y2100 + 1)
  await waitFor(async () => (await fetchReadings(ingestUrl, 'clock-1', 3)).length === tss.length, { timeoutMs: 15_000, what: 'all readings at the ingest' })
  const page = await (await fetch(`${ingestUrl}/v1/devices/clock-1/readings?boot=3`)).json() as { readings: { seq: number, ts: number, rx: number }[] }
  t.diagnostic(`stored ts: ${page.readings.map((r) => r.ts).join(', ')}`)
  assert.deepEqual(page.readings.map((r) => r.seq), tss.map((_, i) => i + 1), 'ordered by seq, whatever ts says')
  assert.deepEqual(page.readings.map((r) => r.ts), tss, 'ts kept exactly as the device sent it')
  for (const r of page.readings) assert.ok(Math.abs(r.rx - now) < 120_000, 'rx is the gateway receive time')
})

/** waitFor on monotonic time (the shared waitFor reads Date.now, which these tests move). */
async function waitMono (fn: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs
  while (!fn()) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms: ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

type Jumper = { stop: () => void, jumps: () => number }

/** Steps Date.now forward and back by up to a day every `everyMs` (this process only). */
function jumpWallClock (t: TestContext, everyMs = 30): Jumper {
  const real = Date.now
  let offset = 0
  let n = 0
  Date.now = () => real() + offset
  const timer = setInterval(() => { n++; offset = (n % 2 ? 1 : -1) * 86_400_000 * ((n % 5) + 1) / 5 }, everyMs)
  const stop = (): void => { clearInterval(timer); Date.now = real }
  t.after(stop)
  return { stop, jumps: () => n }
}

test('wall clock jumping by up to a day, back and forth: linger, backoff and Retry-After keep their monotonic timing', async (t) => {
  let calls = 0
  const at: number[] = []
  const up = await startFakeUpstream(t, (req) => {
    calls++
    at.push(performance.now())
    // 1st: connection error path (500), 2nd: 503 with Retry-After 1 s, then stored
    if (calls === 1) return { status: 500 }
    if (calls === 2) return { status: 503, headers: { 'retry-after': '1' } }
    return { status: 200, results: req.items.map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) }
  })
  const gw = await startGateway(t, { upstream: [up.url], token: 't-pad-0123456789', lingerMs: 300, retryBaseMs: 100, retryMaxMs: 200, partitions: 1 })
  const c = await connectDevice(t, gw.mqttPort, 'jump-1')
  const jumper = jumpWallClock(t)
  const t0 = performance.now()
  await publish(c, 'devices/jump-1/readings', encodeCbor({ seq: 1, boot: 1, ts: 0, values: { a: 1 } }))
  await waitMono(() => gw.store.items === 0, 8000, 'delivered despite the clock jumps')
  const total = performance.now() - t0
  // then linger alone, no failures: a reading goes after ~lingerMs
  const t1 = performance.now()
  await publish(c, 'devices/jump-1/readings', encodeCbor({ seq: 2, boot: 1, ts: 0, values: { a: 2 } }))
  await waitMono(() => gw.store.items === 0, 5000, 'second reading delivered')
  const linger = performance.now() - t1
  jumper.stop()
  t.diagnostic(`${jumper.jumps()} wall-clock jumps; first request after ${Math.round(at[0]! - t0)} ms (linger 300), retry after 500 in ${Math.round(at[1]! - at[0]!)} ms (backoff 100-200), after 503 Retry-After 1 s in ${Math.round(at[2]! - at[1]!)} ms; delivered in ${Math.round(total)} ms; next reading lingered ${Math.round(linger)} ms`)
  assert.ok(jumper.jumps() > 20)
  assert.ok(at[0]! - t0 >= 250 && at[0]! - t0 < 2000, `linger ${at[0]! - t0} ms`)
  assert.ok(at[1]! - at[0]! >= 40 && at[1]! - at[0]! < 2000, `backoff ${at[1]! - at[0]!} ms`)
  assert.ok(at[2]! - at[1]! >= 950 && at[2]! - at[1]! < 3000, `Retry-After wait ${at[2]! - at[1]!} ms`)
  assert.ok(linger >= 250 && linger < 2000, `linger ${linger} ms`)
})

test('a wall-clock jump back during an upstream auth pause does not park the other partitions for the size of the jump', async (t) => {
  let refused = 0
  const up = await startFakeUpstream(t, (req) => {
    if (refused === 0) { refused++; return { status: 401 } }
    return { status: 200, results: req.items.map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) }
  })
  const gw = await startGateway(t, { upstream: [up.url], token: 't-pad-0123456789', lingerMs: 0, authRetryMs: 300, retryBaseMs: 50, retryMaxMs: 100, partitions: 8 })
  // two devices in different partitions
  const ids = ['auth-a', 'auth-b', 'auth-c', 'auth-d', 'auth-e'].filter((d, i, all) => all.findIndex((x) => partitionOf(x, 8) === partitionOf(d, 8)) === i).slice(0, 2)
  assert.equal(ids.length, 2)
  const a = await connectDevice(t, gw.mqttPort, ids[0]!)
  await publish(a, `devices/${ids[0]}/readings`, encodeCbor({ seq: 1, boot: 1, ts: 0, values: { a: 1 } }))
  await waitMono(() => refused === 1, 5000, 'the upstream refused our token once')
  // NTP steps the clock back by an hour
  const real = Date.now
  Date.now = () => real() - 3_600_000
  t.after(() => { Date.now = real })
  const b = await connectDevice(t, gw.mqttPort, ids[1]!)
  await publish(b, `devices/${ids[1]}/readings`, encodeCbor({ seq: 1, boot: 1, ts: 0, values: { b: 1 } }))
  await waitMono(() => gw.store.items === 0, 5000, 'both readings delivered within seconds, not an hour')
})
