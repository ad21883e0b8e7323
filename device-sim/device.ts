/**
 * One simulated device: one MQTT.js client (client id = device id, clean session), QoS 1
 * readings on `devices/{id}/readings`, a per-boot `seq` starting at 1, and an in-memory
 * queue of readings not acknowledged yet.
 *
 * Delivery: at most `inflight` publishes are outstanding; every reading stays queued
 * until its PUBACK. When the connection drops, the device reconnects with a NEW client
 * (MQTT.js's own outgoing store would otherwise resend too) and resends the whole queue
 * in seq order: the gateway dedups by (boot, seq), since mqtt.js resends with dup=false
 * (DESIGN.md section 4). A reboot starts a new boot, restarts seq and loses the queue, as
 * a device that keeps it in RAM would.
 *
 * Each connection has a generation number; callbacks of an older client are ignored, so a
 * late PUBACK from a dead connection can never be mixed up with the current one.
 */
import mqtt, { type MqttClient } from 'mqtt'
import { encodeCbor, readingsTopic, receiptsTopic, wireUint } from '../protocol/index.ts'
import type { SimConfig } from './config.ts'
import { handleReceipt, PublishTimes } from './receipts.ts'
import { newBoot, type BootRecord, type DeviceRecord } from './record.ts'
import type { Clock } from './scheduler.ts'
import { createSensors, sample, type SensorState } from './sensors.ts'
import type { SimStats } from './stats.ts'

type Pending = { seq: number, payload: Buffer }

export type DeviceContext = {
  config: SimConfig
  stats: SimStats
  clock: Clock
  random: () => number
  /** Called with true when the device becomes connected, false when it stops being so. */
  onOnline: (online: boolean) => void
}

export type DeviceState = 'idle' | 'connecting' | 'online' | 'offline' | 'stopped'

export class Device {
  readonly id: string
  readonly record: DeviceRecord
  state: DeviceState = 'idle'
  private readonly ctx: DeviceContext
  private readonly sensors: SensorState
  private readonly topic: string
  private readonly times = new PublishTimes()
  private boot: BootRecord
  private client: MqttClient | null = null
  private gen = 0
  private queue: Pending[] = []
  private sent = 0 // queue[0..sent) written on the current connection
  private inflight = 0
  private reconnectTimer: NodeJS.Timeout | null = null
  private backoff = 1
  /** Readings generated over every boot (for --count). */
  total = 0

  constructor (id: string, firstBoot: number, sensorSeed: number, ctx: DeviceContext) {
    this.id = id
    this.ctx = ctx
    this.sensors = createSensors(sensorSeed)
    this.topic = readingsTopic(id)
    this.boot = newBoot(firstBoot)
    this.record = { id, boots: [this.boot] }
  }

  get currentBoot (): number { return this.boot.boot }
  get unacked (): number { return this.queue.length }
  get inFlight (): number { return this.inflight }

  connect (): void {
    if (this.state === 'stopped') return
    const gen = ++this.gen
    const c = this.ctx.config
    this.state = 'connecting'
    const client = mqtt.connect(c.broker, {
      clientId: this.id,
      clean: true,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: c.keepaliveS,
      resubscribe: false,
      queueQoSZero: false
    })
    this.client = client
    client.on('connect', () => {
      if (gen !== this.gen) return
      this.state = 'online'
      this.backoff = 1
      this.ctx.stats.counters.connects++
      this.ctx.onOnline(true)
      if (c.receipts) client.subscribe(receiptsTopic(this.id), { qos: 1 }, () => {})
      this.pump()
    })
    client.on('message', (_topic, payload) => {
      if (gen !== this.gen) return
      handleReceipt(payload, this.record.boots, this.boot, this.times, this.ctx.clock.now(), this.ctx.stats)
    })
    client.on('error', () => { if (gen === this.gen && this.state === 'connecting') this.ctx.stats.counters.connectErrors++ })
    client.on('close', () => { if (gen === this.gen) this.lost() })
  }

  /** Scheduler tick: sample the sensors and queue (and if possible publish) a reading. */
  tick (): void {
    if (this.state === 'stopped') return
    const c = this.ctx.config
    if (this.queue.length >= c.maxQueue) { this.ctx.stats.counters.skipped++; return }
    const ts = Math.round(this.ctx.clock.now())
    const seq = ++this.boot.generated
    this.total++
    this.ctx.stats.counters.generated++
    const values = sample(this.sensors, ts)
    const payload = c.payload === 'json'
      ? Buffer.from(JSON.stringify({ seq, boot: this.boot.boot, ts, values }))
      : encodeCbor({ seq: wireUint(seq), boot: wireUint(this.boot.boot), ts: wireUint(ts), values })
    this.queue.push({ seq, payload })
    this.pump()
  }

  /** Simulated network loss: the socket dies without DISCONNECT; the device reconnects. */
  dropConnection (): void {
    if (this.state !== 'online' && this.state !== 'connecting') return
    this.ctx.stats.counters.churnDisconnects++
    this.client?.stream?.destroy()
  }

  /** Simulated reboot: the connection dies, the unacked queue is lost, seq restarts. */
  reboot (): void {
    if (this.state === 'stopped') return
    this.ctx.stats.counters.reboots++
    this.ctx.stats.counters.droppedOnReboot += this.queue.length
    this.endBoot('reboot')
    this.teardown()
    this.boot = newBoot(Math.max(this.boot.boot + 1, Math.round(this.ctx.clock.now())))
    this.record.boots.push(this.boot)
    this.times.clear()
    this.scheduleReconnect()
  }

  /** Stops for good (no reconnect); what is still queued counts as unacked at stop. */
  stop (): void {
    if (this.state === 'stopped') return
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer)
    this.reconnectTimer = null
    this.endBoot('stop')
    this.teardown()
    this.state = 'stopped'
  }

  private endBoot (by: 'reboot' | 'stop'): void {
    this.boot.unackedAtEnd = this.queue.length
    this.boot.endedBy = by
    this.queue = []
    this.sent = 0
  }

  private teardown (): void {
    const wasOnline = this.state === 'online'
    this.gen++
    const client = this.client
    this.client = null
    this.inflight = 0
    this.sent = 0
    this.state = 'offline'
    if (wasOnline) this.ctx.onOnline(false)
    if (client) { client.removeAllListeners('close'); client.on('error', () => {}); client.end(true) }
  }

  private lost (): void {
    if (this.state === 'online' || this.state === 'connecting') this.ctx.stats.counters.connectionLosses++
    this.teardown()
    this.scheduleReconnect()
  }

  private scheduleReconnect (): void {
    if (this.state === 'stopped' || this.reconnectTimer) return
    const base = this.ctx.config.reconnectDelayMs * this.backoff
    this.backoff = Math.min(10, this.backoff * 2)
    const delay = base * (0.5 + this.ctx.random())
    this.reconnectTimer = setTimeout(() => { this.reconnectTimer = null; this.connect() }, delay)
  }

  /** Writes queued readings up to the inflight window, oldest first. */
  private pump (): void {
    if (this.state !== 'online' || !this.client) return
    const c = this.ctx.config
    const client = this.client
    const gen = this.gen
    while (this.inflight < c.inflight && this.sent < this.queue.length) {
      const p = this.queue[this.sent++]!
      const counters = this.ctx.stats.counters
      counters.publishes++
      const now = this.ctx.clock.now()
      if (this.boot.published.has(p.seq)) counters.resends++
      else { this.boot.published.add(p.seq); this.times.set(p.seq, now) }
      if (c.qos === 0) {
        client.publish(this.topic, p.payload, { qos: 0 })
        this.queue.splice(this.sent - 1, 1)
        this.sent--
        continue
      }
      this.inflight++
      const seq = p.seq
      client.publish(this.topic, p.payload, { qos: 1 }, (err) => {
        if (gen !== this.gen || err) return
        this.acked(seq, now)
      })
    }
  }

  private acked (seq: number, sentAt: number): void {
    const stats = this.ctx.stats
    this.inflight--
    // [MQTT-4.6.0-2] PUBACKs come in publish order: normally the queue head
    let i = 0
    if (this.queue[0]?.seq !== seq) {
      i = this.queue.findIndex((p) => p.seq === seq)
      if (i < 0) return
    }
    this.queue.splice(i, 1)
    if (i < this.sent) this.sent--
    this.boot.acked.add(seq)
    stats.counters.acked++
    stats.pubackMs.recordMs(this.ctx.clock.now() - sentAt)
    this.pump()
  }
}
