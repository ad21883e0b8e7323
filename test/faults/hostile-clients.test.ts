/**
 * Hostile MQTT clients against the real gateway CLI with default limits (issue 9): each
 * scenario floods one per-client resource, then checks that the limit held (its metric),
 * that the gateway process's RSS stayed under a bound (/proc/PID/status VmRSS, sampled
 * every 100 ms), and that a well-behaved device publishing throughout kept getting its
 * PUBACKs. The repro comes first, on its own gateway: 2,000 retained messages,
 * then connections that CONNECT, SUBSCRIBE `#` and hang up (before issue 9: 1.87 GB for
 * 1,000 of them, as Aedes kept replaying the retained store to each closed socket).
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { connect as netConnect } from 'node:net'
import { join } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { encodeCbor, wireUint } from '../../protocol/index.ts'
import { mulberry32 } from '../../common/random.ts'
import * as P from '../../bench/lib/mqtt-hostile.ts'
import { spawnCli, tempDir, waitFor, type Child } from '../helpers/index.ts'
import { promValue, sampleRss, type RssSampler } from '../helpers/fault-proxy.ts'

const SEED = Number(process.env.FAULT_SEED ?? 20261130)
/** The repro's bound: 134-142 MB after the fix, and before it the test stops at the bound (the issue: 1.87 GB). */
const RSS_BOUND_MB = 200
/** All the scenarios one after another on one gateway (tsx): 146-175 MB measured on a loaded box. */
const SEQUENCE_RSS_BOUND_MB = 250

type Gw = { child: Child, port: number, admin: string, rss: RssSampler }

async function startGateway (t: TestContext, env: Record<string, string> = {}): Promise<Gw> {
  const dir = await tempDir(t, 'faults-hostile-clients-')
  const child = await spawnCli(t, 'gateway/main.ts', [
    '--data-dir', join(dir, 'gw'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--durability', 'process'
  ], { env: { LOG_LEVEL: 'warn', ...env } })
  const rss = sampleRss(t, child.proc.pid!)
  return { child, port: child.ready.mqttPort as number, admin: `http://127.0.0.1:${String(child.ready.adminPort)}`, rss }
}

async function metric (gw: Gw, name: string): Promise<number> {
  const text = await (await fetch(`${gw.admin}/metrics`)).text()
  return promValue(text, name) ?? NaN
}

/** A well-behaved device: one QoS 1 reading every 20 ms, PUBACK latencies recorded. */
type Good = { stop: () => Promise<{ sent: number, p99Ms: number, maxMs: number }>, since: () => string }

async function goodDevice (t: TestContext, gw: Gw): Promise<Good> {
  const port = gw.port
  const c: MqttClient = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'good', clean: true, reconnectPeriod: 0, connectTimeout: 5000 })
  t.after(() => c.endAsync(true).catch(() => {}))
  let seq = 0
  let acked = 0
  const lat: number[] = []
  const timer = setInterval(() => {
    const t0 = performance.now()
    c.publish('devices/good/readings', encodeCbor({ seq: ++seq, boot: 1, ts: wireUint(Date.now()), values: { t: 21 } }), { qos: 1 }, (err) => {
      if (!err) { acked++; lat.push(performance.now() - t0) }
    })
  }, 20)
  t.after(() => clearInterval(timer))
  let mark = 0
  return {
    /** PUBACK latency p99 and max of the readings acknowledged since the last call. */
    since: () => {
      const w = lat.slice(mark).sort((a, b) => a - b)
      mark = lat.length
      return `good device p99 ${(w[Math.floor(w.length * 0.99)] ?? 0).toFixed(1)} ms, max ${(w.at(-1) ?? 0).toFixed(0)} ms over ${w.length} readings; gateway peak RSS so far ${gw.rss.peak().toFixed(0)} MB`
    },
    stop: async () => {
      clearInterval(timer)
      await waitFor(() => acked === seq, { timeoutMs: 10_000, what: `good device: all ${seq} readings acknowledged (${acked})` })
      assert.ok(c.connected, 'the good device is still connected')
      lat.sort((a, b) => a - b)
      return { sent: seq, p99Ms: lat[Math.floor(lat.length * 0.99)] ?? 0, maxMs: lat.at(-1) ?? 0 }
    }
  }
}

/**
 * Runs raw-socket sessions, `concurrency` at a time: each writes its bytes, `after` once
 * the first bytes come back (the CONNACK), and hangs up (destroy, no DISCONNECT) after
 * `hangUpMs`, or `hangUpMs` after `untilBytes` bytes came back, or when the gateway closes it.
 */
async function hammer (port: number, sessions: Iterable<{ bytes: Buffer, after?: Buffer, hangUpMs: number, untilBytes?: number }>, concurrency = 40): Promise<number> {
  const it = sessions[Symbol.iterator]()
  let done = 0
  const worker = async (): Promise<void> => {
    for (let r = it.next(); !r.done; r = it.next()) {
      const s = r.value
      await new Promise<void>((resolve) => {
        const sock = netConnect(port, '127.0.0.1')
        let got = 0
        const end = (): void => { clearTimeout(timer); sock.destroy(); resolve() }
        const timer = setTimeout(end, s.untilBytes ? 5000 : s.hangUpMs)
        sock.on('connect', () => sock.write(s.bytes))
        sock.on('data', (d) => {
          if (got === 0 && s.after) sock.write(s.after)
          got += d.length
          if (s.untilBytes && got >= s.untilBytes) setTimeout(end, s.hangUpMs)
        })
        sock.on('error', () => {})
        sock.on('close', end)
      })
      done++
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return done
}

function * repeat<T> (n: number, f: (i: number) => T): Generator<T> { for (let i = 0; i < n; i++) yield f(i) }

function assertBounded (gw: Gw, what: string, boundMb = RSS_BOUND_MB, good?: Good, t?: TestContext): void {
  if (good && t) t.diagnostic(`${what}: ${good.since()}`)
  assert.equal(gw.child.proc.exitCode, null, `${what}: the gateway is still running`)
  assert.ok(gw.rss.samples().length > 0, 'RSS was sampled')
  assert.ok(gw.rss.peak() < boundMb, `${what}: gateway peak RSS ${gw.rss.peak().toFixed(0)} MB < ${boundMb} MB`)
}

test('issue 9 repro: 2,000 retained messages, then 600 connections that SUBSCRIBE # and hang up: RSS stays bounded', { timeout: 60_000 }, async (t) => {
  // all 2,000 kept (the default keeps 1,000): what is measured is the replay to closed clients
  const gw = await startGateway(t, { GATEWAY_MAX_RETAINED_MESSAGES: '2000', GATEWAY_MAX_RETAINED_BYTES: String(64 * 1024 * 1024) })
  const good = await goodDevice(t, gw)
  const rng = mulberry32(SEED)
  const retained = Buffer.concat([...repeat(2000, (i) => P.publish({ topic: `r/${i}/value`, payload: P.randomBytes(rng, 200), retain: true })), P.pingreq()])
  await hammer(gw.port, [{ bytes: P.connect({ clientId: 'retainer' }), after: retained, hangUpMs: 200, untilBytes: 6 }], 1) // CONNACK + PINGRESP: all 2,000 processed
  assert.equal(await metric(gw, 'gateway_mqtt_retained_messages'), 2000)
  const hello = (i: number): Buffer => Buffer.concat([P.connect({ clientId: `sub${i}` }), P.subscribe(1, [{ topic: '#', qos: 1 }])])
  // CONNACK (4) + SUBACK (5): the replay has begun; then hang up within 10 ms
  const hangUps = hammer(gw.port, repeat(600, (i) => ({ bytes: hello(i), hangUpMs: i % 10, untilBytes: 9 })), 30)
  let finished = false
  // stop early once over the bound (before issue 9 the box would otherwise swap for minutes)
  await Promise.race([hangUps, waitFor(() => finished || gw.rss.peak() >= RSS_BOUND_MB, { timeoutMs: 55_000 })]).finally(() => { finished = true })
  await new Promise((r) => setTimeout(r, 1000)) // let replays still queued run (before issue 9 they went on for seconds)
  const r = await good.stop()
  t.diagnostic(`peak RSS ${gw.rss.peak().toFixed(0)} MB, good device p99 ${r.p99Ms.toFixed(1)} ms over ${r.sent} readings`)
  assertBounded(gw, 'retained replay to closed clients')
  assert.ok(await metric(gw, 'gateway_mqtt_deliveries_skipped_total') > 0, 'deliveries to closed clients were skipped, not written')
})

test('hostile clients one after another against default limits: each bound holds and the good device is served', { timeout: 90_000 }, async (t) => {
  const gw = await startGateway(t)
  const good = await goodDevice(t, gw)
  const rng = mulberry32(SEED + 1)
  const limitHits = (l: string): Promise<number> => metric(gw, `gateway_mqtt_limit_exceeded_total{limit="${l}"}`)

  await t.test('retained flood: 40 clients x 100 retained 4 KiB messages on distinct topics', async () => {
    await hammer(gw.port, repeat(40, (c) => ({
      bytes: P.connect({ clientId: `rf${c}` }),
      after: Buffer.concat([...repeat(100, (i) => P.publish({ topic: `rf/${c}/${i}`, payload: P.randomBytes(rng, 4096), qos: 1, retain: true, id: i + 1 }))]),
      hangUpMs: 0,
      untilBytes: 4 + 100 * 4 // every PUBACK, unless the gateway closes it first (over the quota)
    })), 10)
    assert.ok(await metric(gw, 'gateway_mqtt_retained_messages') <= 1000)
    assert.ok(await metric(gw, 'gateway_mqtt_retained_bytes') <= 4 * 1024 * 1024)
    assert.ok(await limitHits('retained_bytes') + await limitHits('retained_messages') > 0, 'the retained quota was hit')
    assertBounded(gw, 'retained flood', SEQUENCE_RSS_BOUND_MB, good, t)
  })

  await t.test('offline-queue flood: a clean=false subscriber away while 3,000 messages flow gets the first 1,000', async () => {
    const away = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.port}`, { clientId: 'away', clean: false, reconnectPeriod: 0 })
    await away.subscribeAsync('q/#', { qos: 1 })
    await away.endAsync()
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.port}`, { clientId: 'q-pub', clean: true, reconnectPeriod: 0 })
    t.after(() => pub.endAsync(true).catch(() => {}))
    for (let i = 0; i < 3000; i += 100) await Promise.all(Array.from({ length: 100 }, (_, k) => pub.publishAsync('q/x', Buffer.from(String(i + k)), { qos: 1 })))
    assert.equal(await metric(gw, 'gateway_mqtt_queued_messages'), 1000)
    assert.equal(await limitHits('queued_messages'), 2000)
    const got: number[] = []
    const back = mqtt.connect(`mqtt://127.0.0.1:${gw.port}`, { clientId: 'away', clean: false, reconnectPeriod: 0 })
    t.after(() => back.endAsync(true).catch(() => {}))
    back.on('message', (_t, p) => got.push(Number(p.toString())))
    await waitFor(() => got.length >= 1000, { timeoutMs: 10_000, what: `1,000 queued messages delivered (${got.length})` })
    // nothing more can come: a queued message leaves the session's queue only when the
    // client acknowledges it, so an empty queue means every message sent has arrived
    await waitFor(async () => await metric(gw, 'gateway_mqtt_queued_messages') === 0, { timeoutMs: 10_000, what: 'the session queue emptied' })
    assert.deepEqual(got, Array.from({ length: 1000 }, (_, i) => i), 'the first 1,000, in order, once each')
    await back.endAsync()
    assertBounded(gw, 'offline-queue flood', SEQUENCE_RSS_BOUND_MB, good, t)
  })

  await t.test('subscription flood: 50 clients x 400 filters get 100 each, the rest SUBACK 0x80', async () => {
    let suback: Buffer | null = null
    await new Promise<void>((resolve) => {
      const s = netConnect(gw.port, '127.0.0.1', () => s.write(Buffer.concat([P.connect({ clientId: 'sf-probe' }), P.subscribe(1, Array.from({ length: 400 }, (_, i) => ({ topic: `sf/${i}`, qos: 1 })))])))
      let buf = Buffer.alloc(0)
      s.on('data', (d) => { buf = Buffer.concat([buf, d]); if (buf.length >= 4 + 3 + 2 + 400) { suback = buf.subarray(4); s.destroy(); resolve() } })
      s.on('error', () => {})
      setTimeout(() => { s.destroy(); resolve() }, 5000)
    })
    assert.ok(suback, 'a SUBACK came back')
    const codes = [...(suback as Buffer).subarray(5, 405)]
    assert.equal(codes.filter((c) => c === 1).length, 100)
    assert.equal(codes.filter((c) => c === 0x80).length, 300)
    await hammer(gw.port, repeat(50, (c) => ({ bytes: Buffer.concat([P.connect({ clientId: `sf${c}` }), P.subscribe(1, Array.from({ length: 400 }, (_, i) => ({ topic: `sf/${c}/${i}/#`, qos: 2 })))]), hangUpMs: 0, untilBytes: 409 })), 10)
    assert.equal(await limitHits('subscriptions'), 51 * 300)
    assertBounded(gw, 'subscription flood', SEQUENCE_RSS_BOUND_MB, good, t)
  })

  await t.test('QoS 2 flood: 50 clients x 300 QoS 2 publishes, never a PUBREL', async () => {
    await hammer(gw.port, repeat(50, (c) => ({
      bytes: P.connect({ clientId: `q2-${c}` }),
      after: Buffer.concat([...repeat(300, (i) => P.publish({ topic: `q2/${c}`, payload: P.randomBytes(rng, 512), qos: 2, id: i + 1 }))]),
      hangUpMs: 5000 // the gateway closes it at the 101st
    })), 10)
    assert.equal(await limitHits('inflight_inbound'), 50, 'each client was closed at its 101st QoS 2 message in flight')
    assertBounded(gw, 'QoS 2 flood', SEQUENCE_RSS_BOUND_MB, good, t)
  })

  await t.test('wills: 100 oversize wills refused, 300 retained wills fired by abrupt hang-ups stay within the retained quota', async () => {
    await hammer(gw.port, repeat(100, (c) => ({ bytes: P.connect({ clientId: `wb${c}`, will: { topic: 'w/big', payload: P.randomBytes(rng, 20_000) } }), hangUpMs: 5000 })), 10) // closed at CONNECT
    assert.equal(await limitHits('will_bytes'), 100)
    await hammer(gw.port, repeat(300, (c) => ({ bytes: P.connect({ clientId: `ws${c}`, will: { topic: `w/${c}`, payload: P.randomBytes(rng, 1000), qos: 1, retain: true } }), hangUpMs: 30, untilBytes: 4 })), 20)
    assert.ok(await metric(gw, 'gateway_mqtt_retained_messages') <= 1000)
    assertBounded(gw, 'wills', SEQUENCE_RSS_BOUND_MB, good, t)
  })

  await t.test('long topics: 40 KiB topics and 99-level topics, published and subscribed', async () => {
    await hammer(gw.port, repeat(200, (c) => {
      const topic = c % 2 ? 'lt/' + 'x'.repeat(40_000) : Array.from({ length: 99 }, () => 'l').join('/')
      const pkt = c % 4 < 2 ? P.publish({ topic, payload: Buffer.from('x'), qos: 1, retain: true, id: 1 }) : P.subscribe(1, [{ topic, qos: 1 }])
      // a PUBLISH closes the connection; a SUBSCRIBE is answered (CONNACK 4 + SUBACK 5 bytes)
      return { bytes: Buffer.concat([P.connect({ clientId: `lt${c}` }), pkt]), hangUpMs: c % 4 < 2 ? 5000 : 0, untilBytes: c % 4 < 2 ? undefined : 9 }
    }), 20)
    assert.equal(await limitHits('topic_bytes'), 100)
    assert.equal(await limitHits('topic_levels'), 100)
    assertBounded(gw, 'long topics', SEQUENCE_RSS_BOUND_MB, good, t)
  })

  await t.test(`fuzzed packets: 2,000 seeded sessions (seed ${SEED})`, async () => {
    const frng = mulberry32(SEED + 2)
    const n = await hammer(gw.port, repeat(2000, (i) => P.fuzzSession(frng, i)), 40)
    assert.equal(n, 2000)
    assertBounded(gw, 'fuzz', SEQUENCE_RSS_BOUND_MB, good, t)
  })

  const r = await good.stop()
  t.diagnostic(`peak RSS ${gw.rss.peak().toFixed(0)} MB, good device p99 ${r.p99Ms.toFixed(1)} ms, max ${r.maxMs.toFixed(0)} ms over ${r.sent} readings`)
  // generous: this box is shared; bench/fuzz.ts measures the p99 with the load in other processes
  assert.ok(r.p99Ms < 2000, `good device PUBACK p99 ${r.p99Ms.toFixed(0)} ms < 2 s`)
  const ready = await fetch(`${gw.admin}/healthz`)
  assert.equal(ready.status, 200)
})
