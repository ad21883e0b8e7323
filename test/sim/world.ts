/**
 * The acknowledgment-path simulation: one seed drives devices, the gateways' real intake,
 * store and deliverer, the upstream, and crashes; the ledger (oracle.ts) checks every
 * acknowledged reading after every step. How and why it is built this way: the header of
 * test/unit/ack-path-sim.test.ts and docs/faults.md.
 */
import { EventEmitter } from 'node:events'
import { mock } from 'node:test'
import type { Client, PublishPacket } from 'aedes'
import type { IClientOptions, MqttClient } from 'mqtt'
import pino from 'pino'
import { mulberry32, parseConfig } from '../../common/index.ts'
import { decodeTrusted, encodeCbor, encodeResponse, encodeResponseV2, encodeResultsMessage, type ItemResult } from '../../protocol/index.ts'
import { DedupWindow, Store, type StoreConfig } from '../../gateway/store/index.ts'
import { storeDefaults } from '../../gateway/store/config.ts'
import type { Db } from '../../gateway/store/db.ts'
import { K } from '../../gateway/store/keys.ts'
import { checkStore } from '../../gateway/store/check.ts'
import { Intake } from '../../gateway/intake/index.ts'
import { Admission } from '../../gateway/intake/admission.ts'
import { Metrics } from '../../gateway/metrics/index.ts'
import { Deliverer } from '../../gateway/flush/deliver.ts'
import type { Answer, BatchUpstream, OutgoingBatch } from '../../gateway/flush/answer.ts'
import { flushSchema, type FlushConfig } from '../../gateway/flush/config.ts'
import { UpstreamHealth } from '../../gateway/flush/health.ts'
import { ReceiptSender } from '../../gateway/flush/receipt-sender.ts'
import { WireFormat, type Wire } from '../../gateway/flush/wire.ts'
import { MqttUpstream } from '../../gateway/flush/mqtt-upstream.ts'
import { answerOf, type UpstreamResponse } from '../../gateway/flush/http-upstream.ts'
import { DeadLetterTools } from '../../gateway/dlq/index.ts'
import { MemDb } from './mem-db.ts'
import { Ledger, ModelIngest, Violation, nkOf, type ReadingKind } from './oracle.ts'

export type SimOptions = {
  /** one gateway, or two feeding one ingest that dedups on (device, boot, seq) */
  gateways: 1 | 2
  upstream: 'http' | 'mqtt-broker' | 'mqtt-results'
  fullPolicy: 'block' | 'drop-oldest'
  ackMode: 'persisted' | 'delivered'
  /** idle-window sweeps in the write cycles */
  sweep: boolean
  /** the clock jumps past dedupIdleForgetMs (windows forgotten: resends stored again, so the ingest dedups on the natural key) */
  idleForget: boolean
  /** invalid payloads, items the ingest rejects, poison items (400, bisected) */
  deadLetters: boolean
  /** MQTT: the broker answers a batch with PUBACK 0x10, no matching subscribers (nobody got it) */
  noSubscribers: boolean
  /** store writes fail now and then (a full disk): the failed cycle and the one behind it fail, the store reopens */
  writeFailures: boolean
  protocol: 1 | 2
  partitions: number
  durability: 'power' | 'process'
  devices: number
  steps: number
  crashes: number
  /** the intake's overload admission holds readings (intake/admission.ts): limits set, lifted and released at random */
  overload: boolean
  /** a deliberately broken ingest, to prove the oracle fails: it answers one reading stored and drops it */
  tamper?: 'ingest-drops-one'
}

export type SimResult = { trace?: string[], seed: number, options: SimOptions, steps: number, crashes: number, acked: number, stored: number, deadLettered: number, evicted: number, published: number, violation: string | null }

const log = pino({ level: 'silent' })
const IDLE_FORGET_MS = 60_000
const TIMEOUT_MS = 5_000
const HEAL_ROUNDS = 3000
/** readings a device has on the wire at once (MQTT's receive maximum); the others wait in its queue */
const MAX_IN_FLIGHT = 8

/** The options a seed runs with (a replay needs only the seed). */
export function optionsFor (seed: number, over: Partial<SimOptions> = {}): SimOptions {
  const r = mulberry32(seed ^ 0x5eed)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
  const upstream = pick(['http', 'http', 'mqtt-broker', 'mqtt-results'] as const)
  const o: SimOptions = {
    gateways: r() < 0.25 ? 2 : 1,
    upstream,
    fullPolicy: pick(['block', 'drop-oldest'] as const),
    ackMode: r() < 0.3 ? 'delivered' : 'persisted',
    sweep: r() < 0.5,
    idleForget: r() < 0.15,
    deadLetters: r() < 0.4,
    noSubscribers: upstream !== 'http' && r() < 0.3,
    writeFailures: r() < 0.3,
    protocol: r() < 0.5 ? 1 : 2,
    partitions: 1 + Math.floor(r() * 3),
    durability: r() < 0.5 ? 'power' : 'process',
    devices: 2 + Math.floor(r() * 4),
    steps: 60 + Math.floor(r() * 120),
    crashes: 1 + Math.floor(r() * 3),
    // drawn last: the options of every seed drawn before it are what they were
    overload: r() < 0.3
  }
  return { ...o, ...over }
}

type Request =
  | { kind: 'http', gw: Gw, inc: Inc, body: Buffer, wire: Wire, resolve: (r: UpstreamResponse & { sentBytes: number }) => void, reject: (e: Error) => void }
  | { kind: 'mqtt', gw: Gw, inc: Inc, client: ModelBrokerClient, payload: Buffer, messageId: number, cb: (err?: Error, packet?: unknown) => void }

/** What the model broker holds for a gateway's results topic (results mode). */
type Results = { gw: Gw, batch: string, message: Buffer }

/** One run of a gateway process: everything a crash throws away. */
type Inc = {
  alive: boolean
  db: MemDb
  store: Store
  intake: Intake
  deliverer: Deliverer
  mqtt: MqttUpstream | null
  client: ModelBrokerClient | null
  flushing: boolean[]
  admission: Admission | null
  /** moves the admission's clock on */
  advance: (ms: number) => void
  /** the dead-letter tools, as the admin API runs them */
  dlq: DeadLetterTools
}

type Gw = { id: string, inc: Inc }

type Conn = { gw: Gw, inc: Inc, client: object, alive: boolean, inFlight: Set<string> }
type Pending = { nk: string, payload: Buffer, sent: number }
type Device = { id: string, boot: number, nextSeq: number, pending: Map<string, Pending>, acked: string[], conn: Conn | null, bad: number }

/** The cloud broker as the gateway's MQTT.js client sees it: the simulation answers each PUBLISH. */
class ModelBrokerClient extends EventEmitter {
  connected = false
  readonly options = { host: 'broker.sim', port: 1883, protocol: 'mqtt' }
  private nextId = 1
  /**
   * MQTT.js's outgoing store (clean=false): a QoS 1 PUBLISH stays until its PUBACK, and a
   * reconnect sends every one of them again. A PUBLISH or PUBACK lost on the wire means the
   * connection broke: the world calls `reconnect` later, as MQTT.js reconnects on its own.
   */
  private readonly outgoing = new Map<number, { payload: Buffer, cb: (err?: Error, packet?: unknown) => void }>()
  constructor (private readonly world: World, private readonly gw: Gw, private readonly inc: () => Inc) { super() }
  publish (_topic: string, payload: Buffer, _opts: unknown, cb: (err?: Error, packet?: unknown) => void): this {
    const messageId = this.nextId++
    const done = (err?: Error, packet?: unknown): void => {
      if (!this.outgoing.delete(messageId)) return // PUBACKed already (a resend's second PUBACK)
      cb(err, packet)
    }
    this.outgoing.set(messageId, { payload, cb: done })
    this.world.requests.push({ kind: 'mqtt', gw: this.gw, inc: this.inc(), client: this, payload, messageId, cb: done })
    return this
  }

  /** The connection broke and came back (session kept): every stored PUBLISH goes again. */
  reconnect (): void {
    if (!this.connected) return
    this.emit('close')
    this.emit('connect', { sessionPresent: true })
    for (const [messageId, o] of this.outgoing) {
      if (this.world.requests.some((r) => r.kind === 'mqtt' && r.client === this && r.messageId === messageId)) continue
      this.world.requests.push({ kind: 'mqtt', gw: this.gw, inc: this.inc(), client: this, payload: o.payload, messageId, cb: o.cb })
    }
  }

  subscribe (topic: string, _opts: unknown, cb: (err: Error | null, granted: unknown[]) => void): this {
    cb(null, [{ topic, qos: 1 }])
    return this
  }

  async endAsync (): Promise<void> { this.connected = false }
}

export class World {
  readonly rng: () => number
  readonly ledger: Ledger
  readonly ingest: ModelIngest
  readonly requests: Request[] = []
  private readonly results: Results[] = []
  /** batches the ingest gets after the gateway gave up on them (late answers) */
  private readonly late: Array<() => void> = []
  readonly gws: Gw[] = []
  private readonly devices: Device[] = []
  private readonly storeConfig: StoreConfig
  private readonly flushConfig: FlushConfig
  clock = 1_800_000_000_000
  step = 0
  crashes = 0
  faults = true
  private readonly exactlyOnce: boolean

  constructor (readonly seed: number, readonly o: SimOptions) {
    this.rng = mulberry32(seed)
    this.log = process.env.SIM_TRACE ? [] : null
    const naturalKey = o.gateways === 2 || o.idleForget
    this.exactlyOnce = !naturalKey
    this.ledger = new Ledger(this.exactlyOnce, o.ackMode === 'delivered')
    this.ingest = new ModelIngest(this.ledger, naturalKey, (m) => this.trace(m), o.tamper === 'ingest-drops-one')
    const quota = o.fullPolicy === 'drop-oldest' ? 4 + Math.floor(this.rng() * 8) : 6 + Math.floor(this.rng() * 20)
    this.storeConfig = {
      ...storeDefaults(),
      dataDir: '(memory)',
      partitions: o.partitions,
      durability: o.durability,
      commitIntervalMs: 0,
      fullPolicy: o.fullPolicy,
      maxBufferItems: quota,
      dedupIdleForgetMs: IDLE_FORGET_MS,
      dedupCacheDevices: 16
    }
    this.flushConfig = {
      ...parseConfig(flushSchema, { argv: [], env: {}, envPrefix: 'GATEWAY' }),
      upstream: ['http://ingest.sim/'],
      batchMaxItems: 1 + Math.floor(this.rng() * 6),
      receipts: this.rng() < 0.5,
      requestTimeoutMs: TIMEOUT_MS,
      resultsTimeoutMs: TIMEOUT_MS,
      gatewayId: 'gw'
    }
    for (let i = 0; i < o.devices; i++) this.devices.push({ id: `dev${i}`, boot: 1, nextSeq: 1, pending: new Map(), acked: [], conn: null, bad: 0 })
  }

  /** SIM_TRACE=1: every event, printed with a failing seed's replay */
  readonly log: string[] | null
  trace (msg: string): void { this.log?.push(`${this.step} ${msg}`) }

  private chance (p: number): boolean { return this.rng() < p }
  private int (n: number): number { return Math.floor(this.rng() * n) }

  async start (): Promise<void> {
    for (let i = 0; i < this.o.gateways; i++) {
      const gw = { id: `gw${i + 1}`, inc: null as unknown as Inc }
      this.gws.push(gw)
      gw.inc = await this.boot(gw, new Map())
    }
  }

  /** Starts a gateway process on what was durable. */
  private async boot (gw: Gw, data: Map<string, Buffer>): Promise<Inc> {
    const db = new MemDb(data)
    db.onCommit = (c) => {
      if (this.log) for (const [k, v] of c) if (K.kindOf(k) !== 'counter') this.trace(`${gw.id} disk ${v === null ? 'del' : 'put'} ${k}${v && K.isDedup(k) ? ' ' + JSON.stringify(DedupWindow.decode(v).bootMarks()) : ''}${v && K.kindOf(k) === 'dlq' ? ' ' + String((decodeTrusted(v) as { reason: string }).reason) : ''}`)
      this.ledger.commit(gw.id, c)
    }
    const store = await Store.openOn(this.storeConfig, db as unknown as Db, log)
    const metrics = new Metrics()
    // the overload admission on its own clock (advanced by its release step), never busy-driven:
    // the simulation sets and lifts its limits itself
    let admClock = 0
    const admission = this.o.overload ? new Admission(1.1, { uploaded: () => store.answered, backlog: () => store.items, busy: () => 1, now: () => admClock, gateOf: () => undefined, failed: (_c, err) => { throw err } }) : null
    const intake = new Intake(store, { ackMode: this.o.ackMode, maxBlockedReadings: 4 + this.int(20), overloadIntakeRatio: this.o.overload ? 1.1 : 0, maxPayloadBytes: 16 * 1024, dedupCacheDevices: 16 }, log, metrics, admission)
    const config: FlushConfig = { ...this.flushConfig, gatewayId: gw.id }
    const inc = { alive: true, db, store, intake, admission, advance: (ms: number) => { admClock += ms }, mqtt: null, client: null, flushing: Array.from({ length: this.o.partitions }, () => false) } as unknown as Inc
    let upstream: BatchUpstream
    if (this.o.upstream === 'http') {
      upstream = {
        url: 'http://ingest.sim/',
        pick: () => 'http://ingest.sim/',
        failover: () => {},
        batching: { compression: 'none', batchMaxBytes: config.batchMaxBytes },
        start: () => {},
        close: () => {},
        // the real HTTP transport's mapping of a status and body to an answer (answerOf); a
        // request that got no answer is `none`, as the transport reports it
        send: (batch: OutgoingBatch) => new Promise<Answer>((resolve) => {
          this.requests.push({ kind: 'http', gw, inc, body: batch.body, wire: batch.wire, resolve: (r) => resolve(answerOf(batch.wire, r)), reject: (error) => resolve({ kind: 'none', error }) })
        })
      }
    } else {
      const client = new ModelBrokerClient(this, gw, () => inc)
      const mqtt = new MqttUpstream({
        urls: ['mqtt://broker.sim:1883'],
        gatewayId: gw.id,
        ackMode: this.o.upstream === 'mqtt-broker' ? 'broker' : 'results',
        topic: config.upstreamTopic,
        resultsTopic: config.upstreamResultsTopic,
        maxMessageBytes: config.upstreamMaxMessageBytes,
        resultsTimeoutMs: TIMEOUT_MS,
        publishTimeoutMs: TIMEOUT_MS,
        clientId: `gw-${gw.id}`,
        username: gw.id,
        password: '',
        alpn: [],
        protocolVersion: 5,
        reconnectMs: 1000,
        acceptNoSubscribers: false,
        batchMaxItems: config.batchMaxItems,
        maxUnackedBatches: 2 * config.maxInFlight,
        maxUnackedBytes: 2 * config.maxInFlight * config.upstreamMaxMessageBytes,
        compression: 'none',
        batchMaxBytes: config.batchMaxBytes,
        connect: (_opts: IClientOptions) => client as unknown as MqttClient
      }, log)
      mqtt.start()
      client.connected = true
      client.emit('connect', { sessionPresent: true })
      inc.mqtt = mqtt
      inc.client = client
      upstream = mqtt
    }
    inc.dlq = new DeadLetterTools(store, { maxPayloadBytes: 16 * 1024, via: 'admin' }, log)
    inc.deliverer = new Deliverer({
      store,
      config,
      upstream,
      wire: new WireFormat(this.o.protocol === 2 ? 'v2' : 'v1', 'none'),
      health: new UpstreamHealth(log, 30_000),
      receipts: new ReceiptSender(async () => {}, metrics, log),
      metrics,
      log,
      closed: () => !inc.alive
    })
    db.hold = true
    return inc
  }

  /** Kills gateway `gw` at this instant and restarts it on what was durable. */
  private async crash (gw: Gw): Promise<void> {
    const inc = gw.inc
    // a write under way may or may not have reached the disk
    const w = inc.db.held.findIndex((op) => op.kind === 'write')
    if (w >= 0 && this.chance(0.5)) inc.db.complete(w)
    inc.alive = false
    inc.db.kill()
    inc.store.abandon()
    inc.admission?.abandon() // readings waiting for admission die with the process, unanswered
    for (const d of this.devices) if (d.conn?.inc === inc) this.drop(d)
    for (let i = this.requests.length - 1; i >= 0; i--) if (this.requests[i]!.inc === inc) this.requests.splice(i, 1)
    void inc.mqtt?.close()
    this.crashes++
    this.trace(`${gw.id} CRASH`)
    const data = inc.db.snapshot()
    const problems = await checkStore(new MemDb(new Map(data)) as unknown as Db, { dedupIdleForgetMs: IDLE_FORGET_MS })
    if (problems.length) this.ledger.violation ??= `step ${this.step}: gateway check after the crash of ${gw.id}: ${problems.join('; ')}`
    gw.inc = await this.boot(gw, data)
  }

  private drop (d: Device): void {
    if (d.conn) d.conn.alive = false
    d.conn = null
  }

  private connect (d: Device): Conn {
    if (d.conn?.alive) return d.conn
    const gw = this.gws[this.int(this.gws.length)]!
    d.conn = { gw, inc: gw.inc, client: {}, alive: true, inFlight: new Set() }
    return d.conn
  }

  private send (d: Device, p: Pending, dup: boolean): void {
    const conn = this.connect(d)
    if (conn.inFlight.size >= MAX_IN_FLIGHT) return // queued on the device: sent again later
    conn.inFlight.add(p.nk)
    p.sent++
    this.trace(`${d.id} -> ${conn.gw.id} ${p.nk}${dup ? ' (resend)' : ''}`)
    const packet = { cmd: 'publish', topic: `devices/${d.id}/readings`, payload: p.payload, qos: 1, dup, retain: false, messageId: 1 } as unknown as PublishPacket
    conn.inc.intake.handle(conn.client as Client, d.id, packet, (err) => {
      if (!conn.alive) return // the socket died with its gateway: this PUBACK never left
      conn.inFlight.delete(p.nk)
      if (err) { this.drop(d); return } // Aedes closes the connection; the device resends
      this.trace(`${conn.gw.id} PUBACK ${p.nk}`)
      this.ledger.puback(p.nk, conn.gw.id)
      if (d.pending.delete(p.nk)) d.acked.push(p.nk)
    })
  }

  private publishNew (d: Device): void {
    let kind: ReadingKind = 'ok'
    if (this.o.deadLetters) {
      const x = this.rng()
      if (x < 0.05) kind = 'bad'
      else if (x < 0.09 && this.o.upstream !== 'mqtt-broker') kind = 'reject'
      else if (x < 0.11 && this.o.upstream !== 'mqtt-broker') kind = 'poison'
    }
    if (kind === 'bad') {
      const id = ++d.bad
      const nk = `${d.id}|bad|${id}`
      this.ledger.publish({ nk, device: d.id, boot: 0, seq: id, kind, acked: false })
      const p = { nk, payload: Buffer.from(`bad:${d.id}:${id}`), sent: 0 }
      d.pending.set(nk, p)
      this.send(d, p, false)
      return
    }
    // a reboot: a new boot, seq from 1. Only while nothing of an older boot is unacknowledged:
    // a window keeps a device's two newest boots (gateway/store/dedup.ts), so readings resent
    // from two boots back are taken as new, a limit of the design this model stays within
    if (this.chance(0.01) && [...d.pending.values()].every((p) => !p.nk.includes(`|${d.boot - 1}|`))) { d.boot++; d.nextSeq = 1 }
    const seq = d.nextSeq++
    const nk = nkOf(d.id, d.boot, seq)
    this.ledger.publish({ nk, device: d.id, boot: d.boot, seq, kind, acked: false })
    const values: Record<string, number> = { t: seq }
    // CBOR mostly (the intake's fast path), JSON now and then (its decoder)
    const payload = this.chance(0.8) ? encodeCbor({ seq, boot: d.boot, values }) : Buffer.from(JSON.stringify({ seq, boot: d.boot, values }))
    const p = { nk, payload, sent: 0 }
    d.pending.set(nk, p)
    this.send(d, p, false)
  }

  /** Readings a device may send again: not acknowledged and not on the wire of its live connection. */
  private resendable (d: Device): Pending[] {
    const out: Pending[] = []
    for (const p of d.pending.values()) if (!(d.conn?.alive && d.conn.inFlight.has(p.nk))) out.push(p)
    return out
  }

  private startFlush (inc: Inc, p: number): void {
    inc.flushing[p] = true
    const { store, deliverer } = inc
    void (async () => {
      try {
        const batch = await store.readBatch(p, this.flushConfig.batchMaxItems, this.flushConfig.batchMaxBytes)
        try {
          if (batch.seqs.length > 0) await deliverer.deliver(p, batch.seqs, batch.raws)
        } finally {
          store.release(p)
        }
      } catch {
        // the flusher's loop logs it and goes on (a failed delete: the items are sent again)
      } finally {
        inc.flushing[p] = false
      }
    })()
  }

  private flushable (): Array<[Inc, number]> {
    const out: Array<[Inc, number]> = []
    for (const gw of this.gws) {
      const inc = gw.inc
      for (const s of inc.store.partitionStats()) if (!inc.flushing[s.p] && s.depth - s.settling > 0) out.push([inc, s.p])
    }
    return out
  }

  private retryOverride = (): boolean => this.faults && this.chance(0.08)

  /** The simulation answers one upstream request. */
  private answer (i: number): void {
    const [req] = this.requests.splice(i, 1)
    if (!req) return
    const f = this.faults
    if (req.kind === 'http') {
      const x = f ? this.rng() : 0
      const process = (): { status: number, body: Buffer } => {
        const a = this.ingest.process(req.body, req.wire.version, this.retryOverride)
        if (a.status === 400) return { status: 400, body: Buffer.from('{"error":"bad_batch","message":"poison item"}') }
        return { status: 200, body: req.wire.version === 2 ? encodeResponseV2({ batch: a.batch, results: a.results }) : encodeResponse({ batch: a.batch, results: a.results }) }
      }
      const ok = (r: { status: number, body: Buffer }): void => req.resolve({ ...r, retryAfterMs: undefined, url: 'http://ingest.sim/', headers: {}, sentBytes: req.body.length })
      if (x < 0.7) {
        ok(process())
      } else if (x < 0.78) {
        process() // stored, the answer never came
        req.reject(new Error('answer lost'))
      } else if (x < 0.84) {
        req.reject(new Error('request lost'))
      } else if (x < 0.92) {
        req.reject(new Error('timed out'))
        this.late.push(() => { process() }) // it arrives after the gateway gave up
      } else if (x < 0.95) {
        ok({ status: 503, body: Buffer.from('{"error":"busy"}') })
      } else if (x < 0.97) {
        req.resolve({ status: 429, body: Buffer.from('{"error":"slow down"}'), retryAfterMs: 1000, url: 'http://ingest.sim/', headers: {}, sentBytes: req.body.length })
      } else {
        ok({ status: 413, body: Buffer.from('{"error":"too_large"}') }) // the gateway splits the batch
      }
      return
    }
    // MQTT: the PUBLISH reached the model broker
    const x = f ? this.rng() : 0
    const puback = (): void => req.cb(undefined, { cmd: 'publish', messageId: req.messageId })
    const consume = (): void => {
      // the consumer: broker mode stores everything (nobody answers per item); results mode answers
      const version = req.payload[3] === 2 && req.payload[1] === 0x61 ? 2 : 1
      if (this.o.upstream === 'mqtt-broker') { this.ingest.process(req.payload, version, () => false, { rejects: false }); return }
      const a = this.ingest.process(req.payload, version, this.retryOverride)
      const message = a.status === 400
        ? encodeResultsMessage(version, a.batch, { status: 400, error: 'bad_batch', message: 'poison item' })
        : encodeResultsMessage(version, a.batch, { results: a.results as ItemResult[] })
      this.results.push({ gw: req.gw, batch: a.batch, message })
    }
    if (this.o.noSubscribers && f && x < 0.12) {
      // 0x10: the broker took it and nobody was subscribed: nobody got it
      req.client.emit('packetreceive', { cmd: 'puback', messageId: req.messageId, reasonCode: 16 })
      puback()
      return
    }
    if (x < 0.8) { consume(); puback(); return }
    if (x < 0.9) consume() // PUBACK lost
    // else: the PUBLISH was lost on the way. Either way the connection broke: MQTT.js
    // reconnects and sends its stored PUBLISHes again
    this.late.push(() => req.client.reconnect())
  }

  private deliverResults (i: number): void {
    const [r] = this.results.splice(i, 1)
    if (!r) return
    if (this.faults && this.chance(0.1)) return // lost
    const client = r.gw.inc.client
    client?.emit('message', `gateways/${r.gw.id}/results`, r.message, { properties: {} })
  }

  private completeOp (inc: Inc): void {
    const held = inc.db.held
    // one write at a time (group commit); reads may complete in any order
    const reads = held.map((op, i) => [op, i] as const).filter(([op]) => op.kind === 'read')
    const w = held.findIndex((op) => op.kind === 'write')
    if (w >= 0 && (reads.length === 0 || this.chance(0.5))) { inc.db.complete(w); return }
    const pick = reads[this.int(reads.length)]
    if (pick) inc.db.complete(pick[1])
  }

  /** One step of the random phase. */
  private async act (): Promise<void> {
    const o = this.o
    const acts: Array<[number, () => void | Promise<void>]> = []
    const d = this.devices[this.int(this.devices.length)]!
    acts.push([25, () => { const n = 1 + (this.chance(0.3) ? this.int(4) : 0); for (let k = 0; k < n; k++) this.publishNew(d) }])
    const again = this.resendable(d)
    if (again.length) acts.push([10, () => this.send(d, again[this.int(again.length)]!, true)])
    if (d.acked.length) acts.push([3, () => { const nk = d.acked[this.int(d.acked.length)]!; this.resendAcked(d, nk) }])
    if (d.conn) acts.push([1, () => this.drop(d)])
    const busy = this.gws.filter((g) => g.inc.db.held.length > 0)
    if (busy.length) acts.push([40, () => this.completeOp(busy[this.int(busy.length)]!.inc)])
    const fl = this.flushable()
    if (fl.length) acts.push([10, () => { const [inc, p] = fl[this.int(fl.length)]!; this.startFlush(inc, p) }])
    if (this.requests.length) acts.push([14, () => this.answer(this.int(this.requests.length))])
    if (this.results.length) acts.push([10, () => this.deliverResults(this.int(this.results.length))])
    if (this.late.length) acts.push([3, () => { this.late.splice(this.int(this.late.length), 1)[0]!() }])
    if (this.crashes < o.crashes) acts.push([1.5, () => this.crash(this.gws[this.int(this.gws.length)]!)])
    // an operator replays the dead letters: each valid record queued again and its record
    // dropped in one atomic batch (rejected and poison items come back as dead letters)
    if (o.deadLetters) acts.push([1, () => { const g = this.gws[this.int(this.gws.length)]!; this.trace(`${g.id} dlq replay`); g.inc.dlq.replay({}).catch(() => {}) }])
    if (o.sweep) acts.push([4, () => { for (const g of this.gws) g.inc.store.dedup.sweep() }])
    if (o.idleForget) acts.push([0.7, () => { this.clock += IDLE_FORGET_MS + 1000 }])
    if (o.overload) {
      const g = this.gws[this.int(this.gws.length)]!
      const adm = g.inc.admission!
      acts.push([2, () => { const perS = 1 + this.int(2000); this.trace(`${g.id} admission limited to ${perS}/s`); adm.limitTo(perS, 'simulation') }])
      acts.push([1, () => { this.trace(`${g.id} admission unlimited (${adm.held} held admitted)`); adm.close() }])
      if (adm.held) acts.push([5, () => { const ms = 1 + this.int(50); g.inc.advance(ms); this.trace(`${g.id} admission ${ms} ms on`); adm.releaseDue() }])
    }
    if (o.writeFailures) acts.push([1.5, () => { const g = this.gws[this.int(this.gws.length)]!; g.inc.db.failNextWrite = true; this.trace(`${g.id} the next write fails`) }])
    // time passes: MQTT answers time out, a store waiting to reopen after a failed write goes on
    if (o.upstream !== 'http' || o.writeFailures) acts.push([2, () => { mock.timers.tick(TIMEOUT_MS) }])
    acts.push([6, () => {}]) // time passes: one event-loop turn
    let total = 0
    for (const [w] of acts) total += w
    let x = this.rng() * total
    for (const [w, fn] of acts) {
      x -= w
      if (x < 0) { await fn(); break }
    }
  }

  private resendAcked (d: Device, nk: string): void {
    // a device that did not get the PUBACK (lost on the wire) sends the reading again
    const r = this.ledger.published.get(nk)
    if (!r || r.kind === 'bad' || r.boot < d.boot - 1) return
    const p = { nk, payload: encodeCbor({ seq: r.seq, boot: r.boot, values: { t: r.seq } }), sent: 0 }
    const conn = this.connect(d)
    if (conn.inFlight.has(nk)) return
    this.trace(`${d.id} -> ${conn.gw.id} ${nk} (replay of an acknowledged reading)`)
    conn.inFlight.add(nk)
    const packet = { cmd: 'publish', topic: `devices/${d.id}/readings`, payload: p.payload, qos: 1, dup: true, retain: false, messageId: 1 } as unknown as PublishPacket
    conn.inc.intake.handle(conn.client as Client, d.id, packet, (err) => {
      if (!conn.alive) return
      conn.inFlight.delete(nk)
      if (err) { this.drop(d); return }
      this.trace(`${conn.gw.id} PUBACK ${nk} (replayed)`)
      this.ledger.puback(nk, conn.gw.id)
    })
  }

  private async turn (): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve))
  }

  private quiet (): boolean {
    if (this.requests.length || this.results.length || this.late.length) return false
    for (const d of this.devices) if (d.pending.size) return false
    for (const g of this.gws) {
      if (g.inc.db.held.length || g.inc.flushing.some(Boolean) || g.inc.intake.inProgress) return false
      if (g.inc.store.items > 0) return false
    }
    return true
  }

  /** The faults stop; everything is resent, answered and drained. */
  private async heal (): Promise<void> {
    this.faults = false
    for (const g of this.gws) g.inc.admission?.close() // no more limits: everything held goes on
    for (let round = 0; round < HEAL_ROUNDS; round++) {
      this.ledger.step = this.step++
      for (const g of this.gws) while (g.inc.db.held.length) this.completeOp(g.inc)
      while (this.requests.length) this.answer(0)
      while (this.results.length) this.deliverResults(0)
      while (this.late.length) this.late.shift()!()
      for (const d of this.devices) for (const p of this.resendable(d).slice(0, MAX_IN_FLIGHT)) this.send(d, p, true)
      for (const [inc, p] of this.flushable()) this.startFlush(inc, p)
      if (round % 50 === 49) mock.timers.tick(TIMEOUT_MS) // answers lost before the heal time out, reopens go on
      await this.turn()
      if (this.ledger.violation) return
      if (this.quiet()) return
    }
    const left = this.devices.filter((d) => d.pending.size).map((d) => `${d.id}: ${d.pending.size} unacknowledged (${[...d.pending.keys()].slice(0, 3).join(' ')}; ${d.conn?.inFlight.size ?? 0} in flight)`).join(', ')
    const stores = this.gws.map((g) => `${g.id}: ${g.inc.store.items} items buffered, ${g.inc.intake.inProgress} readings waiting in the intake, floors ${g.inc.store.partitionStats().map((x) => x.head).join('/')}`).join(', ')
    this.ledger.violation ??= `no progress after ${HEAL_ROUNDS} rounds without faults (${left}; ${stores}; ${this.requests.length} requests open)`
  }

  async run (): Promise<SimResult> {
    await this.start()
    for (; this.step < this.o.steps && !this.ledger.violation; this.step++) {
      this.ledger.step = this.step
      await this.act()
      await this.turn()
    }
    if (!this.ledger.violation) await this.heal()
    let totals = { acked: 0, stored: 0, deadLettered: 0, evicted: 0 }
    if (!this.ledger.violation) {
      try {
        totals = this.ledger.final()
        for (const g of this.gws) {
          const problems = await checkStore(new MemDb(g.inc.db.snapshot()) as unknown as Db, { dedupIdleForgetMs: IDLE_FORGET_MS })
          if (problems.length) throw new Violation(`drained: gateway check of ${g.id}: ${problems.join('; ')}`)
        }
      } catch (e) {
        if (!(e instanceof Violation)) throw e
        this.ledger.violation = e.message
      }
    }
    for (const g of this.gws) { g.inc.alive = false; g.inc.db.kill(); g.inc.store.abandon(); void g.inc.mqtt?.close() }
    return { ...(this.log ? { trace: this.log } : {}), seed: this.seed, options: this.o, steps: this.step, crashes: this.crashes, ...totals, published: this.ledger.published.size, violation: this.ledger.violation }
  }
}

/**
 * Runs one seed. The clock (Date.now) and the timers (setTimeout/setInterval) are the
 * simulation's while it runs: nothing waits for real time, and a run replays exactly.
 */
export async function simulate (seed: number, over: Partial<SimOptions> = {}): Promise<SimResult> {
  const world = new World(seed, optionsFor(seed, over))
  const realNow = Date.now
  mock.timers.enable({ apis: ['setTimeout', 'setInterval'] })
  Date.now = () => world.clock
  try {
    return await world.run()
  } finally {
    Date.now = realNow
    mock.timers.reset()
  }
}

/** The one command that replays a seed. */
export function replayCommand (seed: number, over: Partial<SimOptions> = {}): string {
  const extra = Object.entries(over).map(([k, v]) => ` --${k} ${String(v)}`).join('')
  return `node --import tsx scripts/sim.ts --seed ${seed}${extra}`
}
