/**
 * Intake: everything between a PUBLISH on `devices/{id}/readings` and its PUBACK
 * (docs/design.md section 4). Aedes 1.x writes the QoS 1 PUBACK right after `authorizePublish`
 * calls back, so this is where the reading becomes durable:
 *
 *   acl -> decode + validate -> (wait for buffer space) -> dedup window -> append -> group
 *   commit -> release callbacks in arrival order per client
 *
 * Packets of one socket read reach `authorizePublish` concurrently, and commits of a slow
 * device (dedup window loaded from disk) finish after a fast one's: callbacks are therefore
 * released through a per-client FIFO, so [MQTT-4.6.0-2] PUBACKs keep publish order. A
 * failed write never calls back with success: the client gets an error (Aedes closes the
 * connection) and resends; the dedup window makes the resend safe.
 *
 * ackMode=delivered holds the callback until the item left the buffer upstream (stored,
 * duplicate or dead-lettered): the partition floor passed its seq.
 */
import type { Client, PublishPacket } from 'aedes'
import type { Logger } from 'pino'
import { Counter, Gauge } from 'prom-client'
import { decodeReading, encodeItemFast, encodeItemSpan, partitionOf, scanReading, ScannedReading, type Reading } from '../../protocol/index.ts'
import { INTAKE_OUTCOMES, type IntakeOutcome, type Metrics } from '../metrics/index.ts'
import { itemCost, type DedupWindow, type DedupWindows, type Store } from '../store/index.ts'
import type { IntakeConfig } from './config.ts'
import { PayloadFormats, type PayloadFormat } from './formats.ts'
import { ImplicitBoots } from './implicit-boot.ts'
import type { Admission } from './admission.ts'

export type { IntakeConfig } from './config.ts'

type Callback = (err?: Error | null) => void
/** conn: which MQTT connection (a reboot is always a new one: implicit-boot.ts) */
type ClientQueue = { entries: Entry[], failed: Error | null, conn: number }

/**
 * One reading between PUBLISH and PUBACK. It is also what the store appends and tells when
 * the write is durable, so a reading costs one object here, not a record plus a closure.
 */
class Entry {
  done = false
  err: Error | null = null
  p = -1
  s = -1
  raw: Buffer = EMPTY
  /** the PUBLISH's DUP flag: proof of a resend for a boot-less reading */
  dup = false
  readonly t0 = performance.now()
  constructor (readonly intake: Intake, readonly q: ClientQueue, readonly cb: Callback) {}

  /** The store's answer for an appended item. */
  settled (err: Error | null): void {
    this.intake.itemSettled(this, err)
  }
}

/** Bytes asked for on top of a payload for the rest of its item (see `costOf`). */
const ITEM_ENVELOPE_ALLOWANCE = 64
const EMPTY = Buffer.alloc(0)
type Blocked = { device: string, reading: Reading, raw: Buffer, entry: Entry, q: ClientQueue }
type FloorWaiter = { target: number, entry: Entry, q: ClientQueue }

const QUEUE = Symbol('intakeQueue')
type WithQueue = Client & { [QUEUE]?: ClientQueue }

export class Intake {
  /** the store's dedup windows (store/dedup-windows.ts) */
  private readonly windows: DedupWindows
  private readonly blocked: Blocked[] = []
  private readonly implicit: ImplicitBoots
  private readonly formats: PayloadFormats
  private conns = 0
  private readonly floorWaiters: FloorWaiter[][]
  private readonly partitions: number
  private readonly log: Logger
  /** label children resolved once: prom-client hashes labels on every inc otherwise */
  private readonly outcome: Record<IntakeOutcome, { inc: () => void }>

  constructor (private readonly store: Store, private readonly config: IntakeConfig, logger: Logger, private readonly metrics: Metrics, readonly admission: Admission | null = null) {
    this.log = logger.child({ component: 'intake' })
    this.windows = store.dedup
    this.outcome = Object.fromEntries(INTAKE_OUTCOMES.map((o) => [o, metrics.intakeOutcome(o)])) as Record<IntakeOutcome, { inc: () => void }>
    this.partitions = store.partitions
    this.implicit = new ImplicitBoots(config.dedupCacheDevices)
    this.formats = new PayloadFormats(config.dedupCacheDevices)
    this.floorWaiters = Array.from({ length: this.partitions }, () => [])
    store.on('space', () => this.admitBlocked())
    // maxDedupDevices (store/dedup-windows.ts): the store logs evictions, the counter is
    // here with the intake's other dedup metrics
    const registers = [metrics.registry]
    const evicted = new Counter({ name: 'gateway_dedup_evicted_total', help: 'Dedup windows evicted from disk to stay within maxDedupDevices (least recently used first); their devices\' retransmits of older readings are stored again', registers })
    evicted.inc(store.dedup.evictedAtOpen)
    store.on('dedupEvicted', (n: number) => evicted.inc(n))
    new Gauge({ name: 'gateway_dedup_windows', help: 'Dedup windows on disk (at most maxDedupDevices)', registers, collect () { this.set(store.dedup.size) } }) // eslint-disable-line no-new
    store.on('floor', (p: number, floor: number) => this.releaseFloor(p, floor))
  }

  /** Number of readings accepted but not yet answered (for graceful shutdown). */
  get inProgress (): number {
    let n = this.blocked.length + (this.admission?.held ?? 0)
    for (const w of this.floorWaiters) n += w.length
    return n
  }

  /** The payload format the device last published in (its receipts use it). */
  payloadFormat (device: string): PayloadFormat {
    return this.formats.of(device)
  }

  /** The payload format of a device's commands: CBOR when its latest reading was CBOR, else JSON. */
  commandFormat (device: string): PayloadFormat {
    return this.formats.commandFormat(device)
  }

  /**
   * Handles one reading published by `client` on its own readings topic, or on a mapped
   * topic (`decode`: how that payload becomes a reading, gateway/mapping/).
   */
  handle (client: Client, device: string, packet: PublishPacket, cb: Callback, decode?: () => Reading): void {
    const c = client as WithQueue
    let q = c[QUEUE]
    if (!q) { q = { entries: [], failed: null, conn: ++this.conns }; c[QUEUE] = q }
    if (q.failed) { cb(q.failed); return }
    const entry = new Entry(this, q, cb)
    entry.dup = packet.dup
    q.entries.push(entry)
    // overload (admission.ts): the reading may wait, its place in the client's PUBACK order kept
    if (this.admission !== null && !this.admission.admit()) { this.admission.hold(client, () => this.proceed(device, packet, entry, q, decode)); return }
    this.proceed(device, packet, entry, q, decode)
  }

  private proceed (device: string, packet: PublishPacket, entry: Entry, q: ClientQueue, decode?: () => Reading): void {
    if (q.failed) { this.finish(q, entry, q.failed); return } // an earlier reading of the client failed while this one waited
    const raw = packet.payload as Buffer
    this.formats.note(device, raw)
    let reading: Reading
    try {
      // the common CBOR shape is checked in place (reading-scan.ts); anything else, and every
      // refusal, goes through the decoder, which words the reason
      reading = decode ? decode() : (raw.length <= this.config.maxPayloadBytes ? scanReading(raw) : null) ?? decodeReading(raw, this.config.maxPayloadBytes)
    } catch (err) {
      const reason = (err as Error).message
      this.outcome.invalid.inc()
      this.metrics.devices.deadLetter(device)
      this.log.warn({ device, reason, bytes: raw.length }, 'invalid reading dead-lettered')
      this.store.deadLetter({ kind: 'payload', reason, at: Date.now(), raw, device, topic: packet.topic }, (e) => this.finish(q, entry, e))
      return
    }
    this.metrics.devices.reading(device, reading.seq)
    if (this.blocked.length > 0 || !this.store.hasRoom(this.costOf(raw))) {
      if (this.blocked.length >= this.config.maxBlockedReadings) {
        this.outcome.blocked_disconnect.inc()
        this.log.warn({ device, blocked: this.blocked.length }, 'buffer full and too many readings waiting; disconnecting the publisher')
        this.finish(q, entry, new Error('gateway buffer full'))
        return
      }
      this.blocked.push({ device, reading, raw, entry, q })
      this.metrics.blocked.set(this.blocked.length)
      return
    }
    this.accept(device, reading, raw, entry, q)
  }

  private admitBlocked (): void {
    let n = 0
    while (this.blocked.length > 0 && this.store.hasRoom(this.costOf(this.blocked[0]!.raw))) {
      const b = this.blocked.shift()!
      n++
      if (b.q.failed) { this.finish(b.q, b.entry, b.q.failed); continue }
      this.accept(b.device, b.reading, b.raw, b.entry, b.q)
    }
    if (n) this.metrics.blocked.set(this.blocked.length)
  }

  /**
   * What the item of a payload will cost the store's quota. The item is encoded only once
   * the reading is admitted (its seq is part of it), so its envelope (partition, seq,
   * device id, boot, timestamps) is an allowance on top of the payload's bytes.
   */
  private costOf (raw: Buffer): number {
    return itemCost(raw.length + ITEM_ENVELOPE_ALLOWANCE)
  }

  private accept (device: string, reading: Reading, raw: Buffer, entry: Entry, q: ClientQueue): void {
    if (reading.seq === null) {
      this.append(device, reading, entry)
      return
    }
    const nowS = Math.floor(Date.now() / 1000)
    const w = this.windows.get(device, nowS)
    if (w) { this.dedup(device, w, reading, raw, entry, q); return }
    // continuations run in registration order: per-device arrival order is kept
    this.windows.load(device, nowS).then((win) => this.dedup(device, win, reading, raw, entry, q), (err: Error) => this.finish(q, entry, err))
  }

  private dedup (device: string, w: DedupWindow, reading: Reading, raw: Buffer, entry: Entry, q: ClientQueue): void {
    if (reading.boot === null) this.implicitBoot(device, w, reading, raw, entry, q)
    const verdict = w.check(reading.boot, reading.seq!)
    if (verdict === 'new') {
      w.seenAtS = Math.floor(Date.now() / 1000)
      this.windows.changed(device, w)
      this.append(device, reading, entry)
    } else if (verdict === 'duplicate') {
      this.outcome.duplicate.inc()
      this.metrics.devices.duplicate(device)
      // acknowledge only once the original is durable (it may sit in the cycle being written)
      this.store.sync((err) => {
        if (err || this.config.ackMode === 'persisted') { this.finish(q, entry, err); return }
        // the original is durable now, so at or below the last committed seq; not the last
        // allocated one, which may belong to a failed write that the floor never passes
        const p = partitionOf(device, this.partitions)
        this.waitFloor(p, this.store.lastCommitted(p), entry, q)
      })
    } else {
      this.outcome.too_old.inc()
      this.metrics.devices.deadLetter(device)
      const reason = `seq ${reading.seq} is older than the dedup window of boot ${JSON.stringify(reading.boot)}: cannot tell whether it is a duplicate`
      this.log.warn({ device, seq: reading.seq, boot: reading.boot }, 'reading older than the dedup window dead-lettered')
      this.store.deadLetter({ kind: 'too-old', reason, at: Date.now(), raw, device }, (e) => this.finish(q, entry, e))
    }
  }

  /** A reading with seq and no boot gets the boot implicit-boot.ts decides. */
  private implicitBoot (device: string, w: DedupWindow, reading: Reading, raw: Buffer, entry: Entry, q: ClientQueue): void {
    const d = this.implicit.decide(device, q.conn, reading.seq!, raw, entry.dup, w)
    if (d.firstSeen) this.log.warn({ device }, 'device sends seq without boot: a seq that restarts on a new connection opens a new implicit boot (see docs/design.md)')
    if (d.started) {
      this.metrics.implicitBoots.inc()
      this.log.info({ device, seq: reading.seq, boot: d.boot }, 'boot-less device restarted its seq on a new connection: new implicit boot')
    }
    reading.boot = d.boot
  }

  private append (device: string, r: Reading, entry: Entry): void {
    const p = partitionOf(device, this.partitions)
    const s = this.store.nextSeq(p)
    entry.p = p
    entry.s = s
    entry.raw = r instanceof ScannedReading ? encodeItemSpan(p, s, device, r.seq, r.boot, r.ts, Date.now(), r) : encodeItemFast(p, s, device, r.seq, r.boot, r.ts, Date.now(), r.values)
    this.store.append(entry)
  }

  /** @internal the store wrote (or failed to write) the entry's item */
  itemSettled (entry: Entry, err: Error | null): void {
    entry.raw = EMPTY
    if (err) { this.outcome.store_failed.inc(); this.finish(entry.q, entry, err); return }
    this.outcome.stored.inc()
    if (this.config.ackMode === 'delivered') this.waitFloor(entry.p, entry.s, entry, entry.q)
    else this.finish(entry.q, entry, null)
  }

  private waitFloor (p: number, target: number, entry: Entry, q: ClientQueue): void {
    if (this.store.floor(p) > target) { this.finish(q, entry, null); return }
    this.floorWaiters[p]!.push({ target, entry, q })
  }

  private releaseFloor (p: number, floor: number): void {
    const ws = this.floorWaiters[p]!
    if (ws.length === 0) return
    // targets are pushed in increasing order per partition (seq allocation order)
    let i = 0
    while (i < ws.length && ws[i]!.target < floor) { this.finish(ws[i]!.q, ws[i]!.entry, null); i++ }
    if (i) ws.splice(0, i)
  }

  /**
   * A place in `client`'s PUBACK order for a publish that is not a reading (a command
   * answer, gateway/commands/): call the returned function once it is durable (or failed);
   * its callback is released in publish order with the client's readings.
   */
  slot (client: Client, cb: Callback): (err: Error | null) => void {
    const c = client as WithQueue
    let q = c[QUEUE]
    if (!q) { q = { entries: [], failed: null, conn: ++this.conns }; c[QUEUE] = q }
    if (q.failed) { cb(q.failed); return () => {} }
    const entry = new Entry(this, q, cb)
    q.entries.push(entry)
    const queue = q
    return (err) => { if (!entry.done) this.finish(queue, entry, err) }
  }

  private finish (q: ClientQueue, entry: Entry, err: Error | null | undefined): void {
    entry.done = true
    entry.err = err ?? null
    if (err && !q.failed) q.failed = err
    // [MQTT-4.6.0-2] release in publish order; after a failure nothing further is acked
    const es = q.entries
    let i = 0
    while (i < es.length && es[i]!.done) {
      const e = es[i]!
      i++
      const fail = q.failed && (e.err ?? q.failed)
      if (!fail) this.metrics.pubackLatency.record((performance.now() - e.t0) / 1000)
      e.cb(fail || null)
    }
    if (i === es.length) es.length = 0
    else if (i > 0) es.splice(0, i)
  }
}
