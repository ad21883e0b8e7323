/**
 * One simulated device: one MQTT.js client (client id = device id), QoS 1
 * readings on `devices/{id}/readings`, a per-boot `seq` starting at 1, and an in-memory
 * queue of readings not acknowledged yet.
 *
 * Delivery: at most `inflight` publishes are outstanding; every reading stays queued
 * until its PUBACK. When the connection drops, the device reconnects with a NEW client
 * (MQTT.js's own outgoing store would otherwise resend too) and resends the whole queue
 * in seq order: the gateway dedups by (boot, seq), since mqtt.js resends with dup=false
 * (docs/design.md section 4). A reboot starts a new boot, restarts seq and loses the queue, as
 * a device that keeps it in RAM would.
 *
 * Commands (docs/commands.md, commands.ts): with `commands` on, the device connects with a
 * persistent session (clean = false, under the same client id after a drop or a reboot, as a
 * device with flash would) and SUBSCRIBEs at QoS 1 to `devices/{id}/commands` on every
 * connection (harmless when the session kept it; needed when the broker lost it). Commands
 * sent while it was away wait in its session at the broker. Each id is executed at most once
 * (the flash outlives reboots); answers go to `devices/{id}/commands/answers` at QoS 1 in
 * the device's payload format. A `reboot` command reboots once its answer is PUBACKed (or
 * the connection is gone), so the answer is not lost with the boot.
 *
 * Each connection has a generation number; callbacks of an older client are ignored, so a
 * late PUBACK from a dead connection can never be mixed up with the current one.
 */
import mqtt, { type MqttClient } from 'mqtt'
import { encodeCbor, readingsTopic, receiptsTopic, wireUint } from '../protocol/index.ts'
import { answersTopic, commandsTopic, decodeDeviceCommand, encodeDeviceAnswer, type DeviceCommand } from '../protocol/commands.ts'
import { CommandFlash, handleCommand } from './commands.ts'
import type { SimConfig } from './config.ts'
import { handleReceipt, PublishTimes } from './receipts.ts'
import { newBoot, type BootRecord, type DeviceRecord } from './record.ts'
import type { Clock } from './scheduler.ts'
import { createSensors, sample, type SensorState } from './sensors.ts'
import type { SimStats } from './stats.ts'
import { deviceTls } from './tls.ts'

type Pending = { seq: number, payload: Buffer }

export type DeviceContext = {
  config: SimConfig
  stats: SimStats
  clock: Clock
  random: () => number
  /** Called with true when the device becomes connected, false when it stops being so. */
  onOnline: (online: boolean) => void
  /** A `set-interval` command changed this device's reading period. */
  onPeriod?: (periodMs: number) => void
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
  /** Every command id this device received and its answer: kept across drops and reboots. */
  readonly flash: CommandFlash
  private readonly cmdTopic: string
  private rebootPending = false

  constructor (id: string, firstBoot: number, sensorSeed: number, ctx: DeviceContext) {
    this.id = id
    this.ctx = ctx
    this.sensors = createSensors(sensorSeed)
    this.topic = readingsTopic(id)
    this.boot = newBoot(firstBoot)
    this.record = { id, boots: [this.boot] }
    this.flash = new CommandFlash(id)
    this.cmdTopic = commandsTopic(id)
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
      // a persistent session keeps the commands sent while the device is away
      clean: !c.commands,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: c.keepaliveS,
      resubscribe: false,
      queueQoSZero: false,
      ...deviceTls(c, this.id)
    })
    this.client = client
    client.on('connect', () => {
      if (gen !== this.gen) return
      this.state = 'online'
      this.backoff = 1
      this.ctx.stats.counters.connects++
      this.ctx.onOnline(true)
      if (c.receipts) client.subscribe(receiptsTopic(this.id), { qos: 1 }, () => {})
      if (c.commands) {
        client.subscribe(this.cmdTopic, { qos: 1 }, (err, granted) => {
          if (gen !== this.gen) return
          if (err || granted?.some((g) => g.qos === 128)) this.ctx.stats.counters.commandSubscribeRefused++
        })
      }
      this.pump()
    })
    client.on('message', (topic, payload) => {
      if (gen !== this.gen) return
      if (topic === this.cmdTopic) { this.onCommand(client, gen, payload); return }
      handleReceipt(payload, this.record.boots, this.boot, this.times, this.ctx.clock.now(), this.ctx.stats)
    })
    client.on('error', (err: Error) => {
      if (gen !== this.gen || this.state !== 'connecting') return
      this.ctx.stats.counters.connectErrors++
      this.ctx.stats.lastConnectError = err.message || (err as NodeJS.ErrnoException).code || String(err)
    })
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

  /** One command delivery: decode, execute once (or answer from flash), answer at QoS 1. */
  private onCommand (client: MqttClient, gen: number, payload: Buffer): void {
    const counters = this.ctx.stats.counters
    let cmd: DeviceCommand
    try { cmd = decodeDeviceCommand(payload) } catch { counters.commandErrors++; this.flash.record.undecodable++; return }
    counters.commandsReceived++
    const out = handleCommand(this.flash, cmd, Date.now())
    if (out.redelivered) counters.commandsRedelivered++
    if (out.expired) counters.commandsExpired++
    if (out.executed) counters.commandsExecuted++
    if (out.effect?.kind === 'set-interval') this.ctx.onPeriod?.(out.effect.seconds * 1000)
    if (out.effect?.kind === 'reboot') this.rebootPending = true
    counters.commandAnswers++
    client.publish(answersTopic(this.id), encodeDeviceAnswer(out.answer, this.ctx.config.payload), { qos: 1 }, () => {
      // the answer is PUBACKed (or the connection is gone): now the reboot the command asked for
      if (out.effect?.kind === 'reboot' && this.rebootPending && gen === this.gen) this.reboot()
    })
  }

  /** Simulated reboot: the connection dies, the unacked queue is lost, seq restarts. */
  reboot (): void {
    if (this.state === 'stopped') return
    this.rebootPending = false
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
    // a reboot command answered on a connection that died before the answer's PUBACK
    if (this.rebootPending) { this.reboot(); return }
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
