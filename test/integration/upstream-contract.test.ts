/**
 * The upstream contract: one set of cases, run against every transport behind the
 * flusher's BatchUpstream (gateway/flush/answer.ts), the way aedes-persistence's abstract
 * suite runs against every persistence: HTTP (a stub ingest on port 0), MQTT broker mode
 * and MQTT results mode (a throwaway Mosquitto with a scripted consumer), and a fake in
 * process handed to the gateway instead of one its flags make: the way a test or a
 * simulation plugs in its own upstream, held to the same cases.
 *
 * Each case drives a real gateway whose --upstream flags pick the transport (through the one
 * factory, gateway/flush/upstream.ts) and says what the upstream does in transport-free
 * words (`Reply`); each transport's `Side` turns that into its own: an HTTP status and
 * body, a results message with a whole-batch status, a PUBACK reason code, silence.
 *
 * A transport runs the cases it can express, and `can` says why not the others: a broker's
 * PUBACK carries no per-item codes, never says "unreadable", "too large" (the flusher sizes
 * batches to fit one PUBLISH) or "retry after", and cannot be repeated or withheld at will
 * (the no-answer case stops the broker process instead); HTTP has no "no consumer", since
 * the ingest itself answers; an answer in process is a return value, so it cannot come twice
 * or late.
 */
import assert from 'node:assert/strict'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib'
import mqtt, { type MqttClient } from 'mqtt'
import { Refusal, type Answer, type BatchUpstream, type OutgoingBatch } from '../../gateway/flush/index.ts'
import { AckCode, decodeBatch, encodeResponse, encodeResultsMessage, sniffEncoding, type BatchItem, type ItemResult } from '../../protocol/index.ts'
import type { GatewayConfig } from '../../gateway/config.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { metricValue } from '../helpers/mqtt-from.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

/** A batch as the upstream side decoded it. */
type Seen = { batch: string, gateway: string, items: BatchItem[], at: number }

/** What the upstream does with a batch, in no transport's words. */
type Reply =
  | { kind: 'results', code?: (item: BatchItem) => number }
  | { kind: 'refuse', why: 'too-large' | 'unreadable' | 'busy', retryAfterMs?: number }
  /** answers every item stored, and the answer reaches the gateway twice (or, where it cannot, is lost and the resend is answered duplicate) */
  | { kind: 'twice' }

type Script = (b: Seen, n: number) => Reply
const allStored: Script = () => ({ kind: 'results' })

type SideOptions = {
  script?: Script
  /** the upstream refuses our credentials (HTTP 401, an MQTT PUBACK "not authorized") */
  refuseAuth?: boolean
  /** MQTT: start without any consumer subscribed to the batches */
  noConsumer?: boolean
}

/** The upstream side of one transport, as a case drives it. */
type Side = {
  /** --upstream and the transport's own flags */
  flags: Partial<GatewayConfig>
  /** an upstream in process, handed to the gateway */
  upstream?: BatchUpstream
  seen: Seen[]
  /** from now on no answer at all (HTTP: the request is held; results: no results; broker: the broker process stopped) */
  mute: () => Promise<void>
  /** answers again; what was withheld arrives now, too late for the batches that waited for it */
  unmute: () => Promise<void>
  /** MQTT: a consumer subscribes now */
  subscribe: () => Promise<void>
}

type Transport = {
  name: string
  /** the answers this transport can give (the header says why some cannot) */
  can: { itemCodes: boolean, unreadable: boolean, tooLarge: boolean, retryAfter: boolean, noConsumer: boolean, twice: boolean }
  start: (t: T, opts: SideOptions) => Promise<Side>
}

type T = { after: (fn: () => unknown) => void }

const WAIT_MS = 600
const fast = { lingerMs: 200, retryBaseMs: 20, retryMaxMs: 200, authRetryMs: 60_000, requestTimeoutMs: WAIT_MS, resultsTimeoutMs: WAIT_MS }

function unpack (payload: Buffer, encoding?: string): Buffer {
  const e = encoding ?? sniffEncoding(payload)
  return e === 'gzip' ? gunzipSync(payload) : e === 'deflate' ? inflateSync(payload) : e === 'br' ? brotliDecompressSync(payload) : payload
}

function seenOf (body: Buffer): Seen {
  const b = decodeBatch(body, { maxItems: 100_000 })
  return { batch: b.batch, gateway: b.gateway, items: b.items as BatchItem[], at: performance.now() }
}

const resultsOf = (b: Seen, code: (item: BatchItem) => number = () => AckCode.Stored): ItemResult[] => b.items.map((i) => [i[0], i[1], code(i)] as ItemResult)
const key = (i: BatchItem): string => `${i[0]}:${i[1]}`

// ---- HTTP: a stub ingest -------------------------------------------------------------

const HTTP_STATUS = { 'too-large': 413, unreadable: 400, busy: 503 } as const

const http: Transport = {
  name: 'HTTP',
  can: { itemCodes: true, unreadable: true, tooLarge: true, retryAfter: true, noConsumer: false, twice: true },
  async start (t, opts) {
    const seen: Seen[] = []
    const script = opts.script ?? allStored
    let muted = false
    const held: ServerResponse[] = []
    /** items whose answer was lost: the ingest stored them, so a resend is answered duplicate */
    const stored = new Set<string>()
    const server = createServer((req, res) => {
      if (!/^\/v[12]\/batches$/.test(req.url ?? '')) { res.writeHead(404).end(); return } // a readings-only stub: no command API
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const b = seenOf(unpack(Buffer.concat(chunks), req.headers['content-encoding'] ?? 'identity'))
        seen.push(b)
        if (muted) { held.push(res); return }
        if (opts.refuseAuth) { res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"unauthorized","message":"bad token"}'); return }
        const r = script(b, seen.length)
        if (r.kind === 'refuse') {
          res.writeHead(HTTP_STATUS[r.why], { 'content-type': 'application/json', ...(r.retryAfterMs !== undefined ? { 'retry-after': String(Math.ceil(r.retryAfterMs / 1000)) } : {}) })
          res.end(JSON.stringify({ error: r.why, message: 'stub ingest' }))
          return
        }
        if (r.kind === 'twice' && !b.items.every((i) => stored.has(key(i)))) {
          // stored, then the answer is lost on the way back
          for (const i of b.items) stored.add(key(i))
          req.socket.destroy()
          return
        }
        const code = r.kind === 'twice' ? () => AckCode.Duplicate : r.code
        res.writeHead(200, { 'content-type': 'application/cbor' }).end(encodeResponse({ batch: b.batch, results: resultsOf(b, code) }))
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(() => new Promise<void>((resolve) => { for (const r of held) r.destroy(); server.closeAllConnections(); server.close(() => resolve()) }))
    return {
      flags: { upstream: [`http://127.0.0.1:${(server.address() as AddressInfo).port}`] },
      seen,
      mute: async () => { muted = true },
      unmute: async () => {
        muted = false
        // the answers to the held requests, after the gateway stopped waiting for them
        for (const r of held.splice(0)) r.writeHead(200, { 'content-type': 'application/cbor' }).end(encodeResponse({ batch: 'late', results: [] }))
      },
      subscribe: async () => {}
    }
  }
}

// ---- MQTT: a throwaway Mosquitto, a consumer or a plain subscriber ---------------------

/** Anonymous clients may read every gateway topic and publish nothing: a batch's PUBLISH is refused "not authorized" (0x87). */
const READ_ONLY_ACL = 'topic read gateways/#\n'

async function broker (t: T, refuseAuth: boolean): Promise<Mosquitto> {
  needTools('mosquitto')
  if (!refuseAuth) return await startMosquitto(t)
  const dir = await tempDir(t, 'contract-mosq-')
  await writeFile(join(dir, 'acl'), READ_ONLY_ACL)
  return await startMosquitto(t, { dir, extra: [`acl_file ${join(dir, 'acl')}`] })
}

function mqttTransport (ack: 'broker' | 'results'): Transport {
  const results = ack === 'results'
  return {
    name: `MQTT ${ack} mode`,
    can: { itemCodes: results, unreadable: results, tooLarge: results, retryAfter: results, noConsumer: true, twice: results },
    async start (t, opts) {
      const m = await broker(t, opts.refuseAuth ?? false)
      const seen: Seen[] = []
      const script = opts.script ?? allStored
      let muted = false
      const held: Array<() => void> = []
      let consumer: MqttClient | null = null
      const subscribe = async (): Promise<void> => {
        const c = await mqtt.connectAsync(m.url, { clientId: `contract-consumer-${Math.random().toString(36).slice(2)}`, protocolVersion: 5, reconnectPeriod: 0 })
        t.after(() => c.endAsync(true).catch(() => {}))
        consumer = c
        c.on('message', (_topic, payload) => {
          const b = seenOf(unpack(payload))
          seen.push(b)
          if (!results) return // broker mode: the PUBACK was the answer
          const r = script(b, seen.length)
          const msg = r.kind === 'refuse'
            ? encodeResultsMessage(1, b.batch, { status: HTTP_STATUS[r.why], error: r.why, message: 'scripted consumer', ...(r.retryAfterMs !== undefined ? { retryAfterMs: r.retryAfterMs } : {}) })
            : encodeResultsMessage(1, b.batch, { results: resultsOf(b, r.kind === 'results' ? r.code : undefined) })
          const send = (): void => { c.publish(`gateways/${b.gateway}/results`, msg, { qos: 1 }) }
          if (muted) { held.push(send); return }
          send()
          if (r.kind === 'twice') send()
        })
        await c.subscribeAsync('gateways/+/batches/+', { qos: 1 })
      }
      if (!opts.noConsumer) await subscribe()
      return {
        flags: { upstream: [m.url], upstreamAck: ack },
        seen,
        mute: async () => {
          muted = true
          // a broker's PUBACK cannot be withheld by a client: the broker process stops
          if (!results) m.proc.kill('SIGSTOP')
        },
        unmute: async () => {
          muted = false
          if (!results) m.proc.kill('SIGCONT')
          for (const send of held.splice(0)) send()
        },
        subscribe: async () => { if (!consumer) await subscribe() }
      }
    }
  }
}

// ---- in process: a BatchUpstream of the test's own ----------------------------------------

const REFUSALS = { 'too-large': Refusal.TooLarge, unreadable: Refusal.Unreadable, busy: Refusal.Busy } as const

/** The simplest upstream a test or a simulation can plug in: it answers each batch from the script. */
class FakeUpstream implements BatchUpstream {
  readonly url = 'fake://upstream'
  readonly batching = { compression: 'none', batchMaxBytes: 256 * 1024 } as const
  muted = false
  consumer: boolean
  private closed = false
  private readonly waits = new Set<() => void>()

  constructor (readonly seen: Seen[], private readonly opts: SideOptions) {
    this.consumer = !opts.noConsumer
  }

  pick (): string { return this.url }
  failover (): void {}
  start (): void {}
  close (): void {
    this.closed = true
    for (const w of this.waits) w()
  }

  async send (batch: OutgoingBatch): Promise<Answer> {
    const b = seenOf(batch.body)
    this.seen.push(b)
    const heard = { url: this.url, sentBytes: batch.body.length }
    const refused = (reason: Refusal, label: string, retryAfterMs?: number, message = `fake upstream: ${reason}`): Answer =>
      ({ ...heard, kind: 'refused', reason, label, message, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) })
    if (this.muted || this.closed) {
      // no answer: the wait a real transport would give up after
      await new Promise<void>((resolve) => { const w = (): void => { clearTimeout(timer); this.waits.delete(w); resolve() }; const timer = setTimeout(w, WAIT_MS); this.waits.add(w) })
      return { kind: 'none', error: new Error(`no answer from ${this.url} within ${WAIT_MS} ms`) }
    }
    if (this.opts.refuseAuth) return refused(Refusal.Auth, '401')
    if (!this.consumer) return refused(Refusal.NoConsumer, '503', undefined, 'no consumer is subscribed to the fake')
    const r = (this.opts.script ?? allStored)(b, this.seen.length)
    if (r.kind === 'refuse') return refused(REFUSALS[r.why], String(HTTP_STATUS[r.why]), r.retryAfterMs)
    return { ...heard, kind: 'results', results: resultsOf(b, r.kind === 'results' ? r.code : undefined) }
  }
}

const inProcess: Transport = {
  name: 'in process',
  can: { itemCodes: true, unreadable: true, tooLarge: true, retryAfter: true, noConsumer: true, twice: false },
  async start (t, opts) {
    const seen: Seen[] = []
    const fake = new FakeUpstream(seen, opts)
    t.after(() => fake.close())
    return {
      flags: {},
      upstream: fake,
      seen,
      mute: async () => { fake.muted = true },
      unmute: async () => { fake.muted = false },
      subscribe: async () => { fake.consumer = true }
    }
  }
}

// ---- the cases ----------------------------------------------------------------------------

type Gw = Awaited<ReturnType<typeof startGateway>>

async function gatewayFor (t: T, side: Side, id: string, extra: Partial<GatewayConfig> = {}): Promise<Gw> {
  const gw = await startGateway(t, { ...fast, ...side.flags, gatewayId: id, ...extra }, side.upstream ? { upstream: side.upstream } : {})
  if (side.flags.upstreamAck === 'results') await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed to its results' })
  if (side.flags.upstreamAck) await waitFor(() => gw.flusher.status().mqtt?.connected, { what: 'gateway connected to the broker' })
  return gw
}

/** `n` readings of one device (one partition), published at QoS 1 back to back, so they make one batch. */
async function readings (t: T, gw: Gw, device: string, n: number): Promise<void> {
  const c = await connectDevice(t, gw.mqttPort, device)
  await Promise.all(Array.from({ length: n }, (_, i) => publish(c, `devices/${device}/readings`, reading(i + 1))))
}

async function itemsAnswered (gw: Gw, code: 'stored' | 'duplicate' | 'retry' | 'rejected'): Promise<number> {
  return await metricValue(gw.metrics.registry, 'gateway_upstream_items_total', { code })
}

/** Every (p, s) the upstream side saw, with how many times. */
function sightings (seen: Seen[]): Map<string, number> {
  const m = new Map<string, number>()
  for (const b of seen) for (const i of b.items) m.set(key(i), (m.get(key(i)) ?? 0) + 1)
  return m
}

function upstreamContract (tr: Transport): void {
  const name = (s: string): string => `${tr.name}: ${s}`
  const id = (s: string): string => `gw-${tr.name.split(' ').pop()!.toLowerCase()}-${s}`

  test(name('per-item results are mapped back to (p, s): stored and duplicate deleted, retry sent again, rejected dead-lettered'), async (t) => {
    // device seq 5 rejected, seq 3 retried once, seq 4 answered duplicate, the rest stored
    const retried = new Set<string>()
    const side = await tr.start(t, {
      script: () => ({
        kind: 'results',
        code: (i) => {
          if (i[3] === 5) return AckCode.Rejected
          if (i[3] === 4) return AckCode.Duplicate
          if (i[3] === 3 && !retried.has(key(i))) { retried.add(key(i)); return AckCode.Retry }
          return AckCode.Stored
        }
      })
    })
    const gw = await gatewayFor(t, side, id('items'))
    await readings(t, gw, 'dev-items', 10)
    await waitFor(() => gw.store.items === 0, { timeoutMs: 20_000, what: 'every item answered' })
    const seen = sightings(side.seen)
    assert.equal(seen.size, 10, 'every item reached the upstream')
    if (tr.can.itemCodes) {
      assert.equal(gw.store.dlqCount, 1, 'the rejected item dead-lettered')
      const [dead] = await gw.store.deadLetters()
      assert.match(dead!.reason, /rejected by the ingest/)
      assert.equal(await itemsAnswered(gw, 'retry'), 1)
      assert.equal(await itemsAnswered(gw, 'duplicate'), 1)
      assert.equal(await itemsAnswered(gw, 'stored'), 8, 'the retried item stored on its second sending')
      assert.equal([...seen.values()].filter((n) => n === 2).length, 1, 'only the retried item sent twice')
    } else {
      // the broker's PUBACK answers every item stored
      assert.equal(gw.store.dlqCount, 0)
      assert.equal(await itemsAnswered(gw, 'stored'), 10)
    }
  })

  test(name('refused credentials: flushing pauses, /readyz unready, nothing deleted or dead-lettered'), async (t) => {
    const side = await tr.start(t, { refuseAuth: true })
    const gw = await gatewayFor(t, side, id('auth'))
    await readings(t, gw, 'dev-auth', 3)
    await waitFor(() => gw.flusher.status().state === 'auth-failed', { timeoutMs: 15_000, what: 'the refusal' })
    assert.equal(gw.flusher.ready, false)
    assert.match(gw.flusher.status().lastError ?? '', /refused our token/)
    assert.equal(gw.store.items, 3, 'nothing deleted')
    assert.equal(gw.store.dlqCount, 0, 'nothing dead-lettered')
    assert.equal(await itemsAnswered(gw, 'stored'), 0)
  })

  if (tr.can.tooLarge) {
    test(name('too large: the batch is split until each part is taken'), async (t) => {
      const side = await tr.start(t, { script: (b) => b.items.length > 4 ? { kind: 'refuse', why: 'too-large' } : { kind: 'results' } })
      const gw = await gatewayFor(t, side, id('large'), { lingerMs: 500 })
      await readings(t, gw, 'dev-large', 16)
      await waitFor(() => gw.store.items === 0, { timeoutMs: 20_000, what: 'drained in parts' })
      assert.ok(side.seen.some((b) => b.items.length > 4), 'a batch was refused as too large (not luck)')
      assert.equal(gw.store.dlqCount, 0, 'splitting dead-letters nothing')
      assert.equal(await itemsAnswered(gw, 'stored'), 16, 'each item stored once')
    })
  }

  if (tr.can.unreadable) {
    test(name('unreadable: the batch is bisected down to the poison item, which alone is dead-lettered'), async (t) => {
      let refusals = 0
      const side = await tr.start(t, {
        script: (b) => {
          if (!b.items.some((i) => i[3] === 7)) return { kind: 'results' }
          refusals++
          return { kind: 'refuse', why: 'unreadable' }
        }
      })
      const gw = await gatewayFor(t, side, id('poison'), { lingerMs: 500 })
      await readings(t, gw, 'dev-poison', 16)
      await waitFor(() => gw.store.items === 0, { timeoutMs: 20_000, what: 'drained' })
      assert.equal(gw.store.dlqCount, 1)
      const [dead] = await gw.store.deadLetters()
      assert.match(dead!.reason, /for this item alone/)
      assert.ok(refusals >= 2, `bisected (${refusals} refusals)`)
      assert.equal(await itemsAnswered(gw, 'stored'), 15)
    })
  }

  if (tr.can.retryAfter) {
    test(name('busy with a wait: the same items go again no sooner than the upstream asked'), async (t) => {
      const side = await tr.start(t, { script: (_b, n) => n === 1 ? { kind: 'refuse', why: 'busy', retryAfterMs: 1500 } : { kind: 'results' } })
      const gw = await gatewayFor(t, side, id('busy'))
      await readings(t, gw, 'dev-busy', 3)
      await waitFor(() => gw.store.items === 0, { timeoutMs: 20_000, what: 'drained after the wait' })
      const [first, second] = side.seen
      const again = new Set(second!.items.map(key))
      assert.ok(first!.items.every((i) => again.has(key(i))), 'the same items again')
      // without the wait the back-off (retryMaxMs 200) would have sent them again at once
      assert.ok(second!.at - first!.at >= 1000, `waited ${Math.round(second!.at - first!.at)} ms of the 1500 asked`)
      assert.equal(gw.flusher.status().state, 'ok')
    })
  }

  if (tr.can.noConsumer) {
    test(name('no consumer (MQTT: a PUBACK 0x10): the batch is kept and sent again once one subscribes'), async (t) => {
      const side = await tr.start(t, { noConsumer: true })
      const gw = await gatewayFor(t, side, id('nocons'))
      await readings(t, gw, 'dev-nocons', 3)
      await waitFor(() => /no consumer is subscribed/.test(gw.flusher.status().lastError ?? ''), { timeoutMs: 15_000, what: 'the upstream said nobody is subscribed' })
      assert.equal(gw.flusher.status().state, 'retrying')
      if (side.flags.upstreamAck) assert.equal(gw.flusher.status().mqtt?.noSubscribers, true, '/status names the broker\'s answer')
      assert.equal(gw.store.items, 3, 'nothing deleted on a PUBACK that reached nobody')
      await side.subscribe()
      await waitFor(() => gw.store.items === 0, { timeoutMs: 20_000, what: 'drained once a consumer is there' })
      assert.equal(sightings(side.seen).size, 3)
      assert.equal(await itemsAnswered(gw, 'stored'), 3)
    })
  }

  test(name('no answer: the same items go again, and the answer that comes too late is not applied'), async (t) => {
    const side = await tr.start(t, {})
    const gw = await gatewayFor(t, side, id('silent'))
    await side.mute()
    let muted = true
    t.after(() => muted ? side.unmute() : undefined)
    await readings(t, gw, 'dev-silent', 3)
    await waitFor(async () => await metricValue(gw.metrics.registry, 'gateway_upstream_batches_total', { outcome: 'network_error' }) >= 1, { timeoutMs: 15_000, what: 'a batch went unanswered' })
    assert.equal(gw.store.items, 3, 'nothing deleted without an answer')
    await side.unmute()
    muted = false
    await waitFor(() => gw.store.items === 0, { timeoutMs: 20_000, what: 'drained after the silence' })
    const seen = sightings(side.seen)
    assert.equal(seen.size, 3)
    // (a batch sent after the first may be answered on its first sending: readings can trickle in across batches)
    assert.ok(side.seen[0]!.items.every((it) => seen.get(key(it))! >= 2), `the unanswered batch's items sent again: ${JSON.stringify(side.seen.map((b) => b.items.map(key)))}`)
    assert.equal(await itemsAnswered(gw, 'stored'), 3, 'each item settled once: the late answer was not applied')
    assert.equal(gw.store.dlqCount, 0)
  })

  if (tr.can.twice) {
    test(name('duplicate answers: an item answered twice is settled once'), async (t) => {
      const side = await tr.start(t, { script: () => ({ kind: 'twice' }) })
      const gw = await gatewayFor(t, side, id('twice'))
      await readings(t, gw, 'dev-twice', 3)
      await waitFor(() => gw.store.items === 0, { timeoutMs: 20_000, what: 'drained' })
      // let the repeated answer arrive: it is counted as late or answered duplicate, never applied twice
      await waitFor(async () => await itemsAnswered(gw, 'stored') + await itemsAnswered(gw, 'duplicate') >= 3, { what: 'answers counted' })
      if (side.flags.upstreamAck === 'results') {
        await waitFor(async () => await metricValue(gw.metrics.registry, 'gateway_upstream_mqtt_ignored_results_total', { reason: 'late' }) >= 1, { what: 'the repeated results ignored as late' })
      }
      assert.equal(await itemsAnswered(gw, 'stored') + await itemsAnswered(gw, 'duplicate'), 3, 'each item settled once')
      assert.equal(gw.store.dlqCount, 0)
    })
  }
}

for (const tr of [http, mqttTransport('broker'), mqttTransport('results'), inProcess]) upstreamContract(tr)
