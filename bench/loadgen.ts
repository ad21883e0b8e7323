/**
 * MQTT QoS 1 load generator for the intake benchmark, run in its own process (bench/intake.ts
 * spawns it, pinned to its own core). Hand-rolled framing over net.Socket with TCP_NODELAY
 * (bench/lib/mqtt-wire.ts) so the generator costs a few microseconds per message and is not
 * the thing being measured; its ceiling is measured against an instant-ack sink.
 *
 * `--tls`: MQTT over TLS (the gateway's `--tls-port`), trusting `--ca`; `--cert`/`--key`
 * (with `{id}` standing for the device id) present a client certificate per device. The
 * connection counts as up at CONNACK, so `connectMs` includes the handshakes.
 *
 * Each connection is one device: client id = device id, topic `devices/{id}/readings`,
 * CBOR payload `{ seq, boot, ts, values: { t, h } }` with a strictly increasing `seq` and
 * `ts` as a uint64 (docs/design.md section 3).
 *
 * Modes:
 *   closed  every connection keeps `--inflight W` publishes outstanding: a PUBACK releases
 *           the next publish. Measures the maximum PUBACK rate.
 *   open    `--rate R` publishes/s in total, round-robin over the connections on a 1 ms
 *           schedule (each device every connections/R s), whatever the broker does.
 *           Measures latency at that rate.
 *
 * Timeline: connect all -> warm-up (load, nothing recorded) -> measure (`--duration-s`) ->
 * drain (no new publishes; wait for outstanding PUBACKs, bounded) -> one JSON result line
 * on stdout. Latency = publish write -> PUBACK read, recorded for publishes written during
 * the measure window, in a log-bucket histogram. Throughput = PUBACKs read during the
 * window / window length. Phase changes are also printed as JSON lines so the parent can
 * sample the broker's CPU over exactly the measured window.
 */
import { readFileSync } from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'
import { performance } from 'node:perf_hooks'
import { encodeCbor, readingsTopic, wireUint } from '../protocol/index.ts'
import { Histogram } from '../common/index.ts'
import { connectPacket, DISCONNECT, FrameSplitter, PacketType, PINGREQ, publishQos1, topicField } from './lib/mqtt-wire.ts'
import { helpText, num, parseFlags, str, bool, type FlagSpec } from './lib/args.ts'
import { Inflight } from './lib/inflight.ts'
import type { LoadResult } from './lib/types.ts'

const FLAGS: FlagSpec = {
  host: { type: 'string', default: '127.0.0.1', doc: 'broker host (the bench only targets 127.0.0.1)' },
  port: { type: 'number', doc: 'broker MQTT port' },
  connections: { type: 'number', default: 100, doc: 'MQTT connections (= devices)' },
  inflight: { type: 'number', default: 32, doc: 'closed loop: QoS 1 publishes in flight per connection' },
  rate: { type: 'number', default: 0, doc: 'open loop: total publishes/s over all connections (0 = closed loop)' },
  'max-inflight': { type: 'number', default: 10_000, doc: 'open loop: per-connection cap on outstanding publishes (beyond it a scheduled publish is skipped and counted)' },
  'duration-s': { type: 'number', default: 10, doc: 'measured window' },
  'warmup-s': { type: 'number', default: 2, doc: 'load before the window, not recorded' },
  'drain-timeout-s': { type: 'number', default: 5, doc: 'wait this long for outstanding PUBACKs after the window' },
  'connect-concurrency': { type: 'number', default: 64, doc: 'connections being opened at once' },
  'connect-timeout-s': { type: 'number', default: 60, doc: 'all connections must be up within this' },
  'id-prefix': { type: 'string', default: 'bench-', doc: 'device id prefix' },
  boot: { type: 'number', default: 0, doc: 'boot value in every payload (0 = derived from the clock)' },
  progress: { type: 'bool', default: false, doc: 'print a rate line to stderr every second' },
  tls: { type: 'bool', default: false, doc: 'MQTT over TLS (the gateway --tls-port)' },
  ca: { type: 'string', doc: 'PEM CA trusted for --tls (server name checked: localhost)' },
  cert: { type: 'string', doc: '--tls: PEM client certificate per device, {id} = device id' },
  key: { type: 'string', doc: '--tls: PEM key of --cert, {id} = device id' }
}

/** Opens the socket of one device: TCP, or TLS with the --ca/--cert/--key files. */
function opener (f: ReturnType<typeof parseFlags>, host: string, port: number): { open: (id: string) => net.Socket, readyEvent: 'connect' | 'secureConnect' } {
  if (!bool(f, 'tls')) return { open: () => net.connect({ host, port, noDelay: true }), readyEvent: 'connect' }
  const ca = str(f, 'ca') === undefined ? undefined : readFileSync(str(f, 'ca')!)
  const cert = str(f, 'cert')
  const key = str(f, 'key')
  return {
    open: (id) => tls.connect({
      host, port, servername: 'localhost', ...(ca ? { ca } : {}),
      ...(cert && key ? { cert: readFileSync(cert.replaceAll('{id}', id)), key: readFileSync(key.replaceAll('{id}', id)) } : {})
    }),
    readyEvent: 'secureConnect'
  }
}

const KEEPALIVE_S = 120
const VALUES = { t: 21.5, h: 40 } as const

type Phase = 'connecting' | 'warmup' | 'measure' | 'drain' | 'done'

type Counters = {
  sent: number
  acked: number
  connectErrors: number
  socketErrors: number
  disconnects: number
  outOfOrderAcks: number
  unexpectedAcks: number
  skipped: number
}

function main (): void {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(`usage: node --import tsx bench/loadgen.ts --port N [flags]\n${helpText(FLAGS)}\n`); return }
  const host = str(f, 'host')!
  const port = num(f, 'port')
  const nConn = num(f, 'connections')
  const window = num(f, 'inflight')
  const rate = num(f, 'rate')
  const open = rate > 0
  const maxInflight = Math.min(num(f, 'max-inflight'), 60_000)
  const durationMs = num(f, 'duration-s') * 1000
  const warmupMs = num(f, 'warmup-s') * 1000
  const drainMs = num(f, 'drain-timeout-s') * 1000
  const boot = num(f, 'boot') || Math.floor(Date.now() / 1000)
  const prefix = str(f, 'id-prefix')!
  if (!open && (window < 1 || window > 60_000)) throw new Error('--inflight must be in 1..60000')
  const sockets = opener(f, host, port)

  let phase: Phase = 'connecting'
  let measureStart = Infinity
  let measureEnd = Infinity
  const hist = new Histogram()
  // Per second of the window (by PUBACK time): shows stalls (GC, compaction) that one p99 hides.
  const secHist = new Histogram()
  const timeline: LoadResult['timeline'] = []
  let secAcks = 0
  const all: Counters = { sent: 0, acked: 0, connectErrors: 0, socketErrors: 0, disconnects: 0, outOfOrderAcks: 0, unexpectedAcks: 0, skipped: 0 }
  const win = { sent: 0, acked: 0 }
  const errorSamples: string[] = []
  const noteError = (msg: string): void => { if (errorSamples.length < 5) errorSamples.push(msg) }

  const emit = (o: Record<string, unknown>): void => { process.stdout.write(JSON.stringify(o) + '\n') }

  class Conn {
    readonly sock: net.Socket
    readonly topic: Buffer
    readonly inflight = new Inflight(open ? 16 : window)
    readonly splitter = new FrameSplitter()
    seq = 0
    nextPid = 0
    out: Buffer[] = []
    connected = false
    closed = false
    settled = false // CONNACK or connect failure seen
    dirty = false // queued for the next flushDirty

    constructor (readonly id: string, onConnack: (c: Conn, err?: string) => void) {
      this.topic = topicField(readingsTopic(id))
      this.sock = sockets.open(id)
      this.sock.setNoDelay(true)
      this.sock.on(sockets.readyEvent, () => { this.sock.write(connectPacket(id, KEEPALIVE_S)) })
      this.sock.on('data', (chunk: Buffer) => {
        try {
          this.splitter.push(chunk, (type, _flags, body) => {
            if (type === PacketType.Puback) this.onPuback((body[0]! << 8) | body[1]!)
            else if (type === PacketType.Connack) {
              if (body[1] === 0) { this.connected = true; onConnack(this) } else onConnack(this, `CONNACK return code ${body[1]}`)
            }
            // PINGRESP and anything else: ignored
          })
        } catch (err) {
          all.socketErrors++
          noteError(`${id}: ${(err as Error).message}`)
          this.sock.destroy()
          return
        }
        if (this.out.length > 0) scheduleFlush(this)
      })
      this.sock.on('error', (err) => {
        if (!this.connected) onConnack(this, err.message)
        else if (phase !== 'done') { all.socketErrors++; noteError(`${id}: ${err.message}`) }
      })
      this.sock.on('close', () => {
        if (!this.closed && this.connected && phase !== 'done') { all.disconnects++; noteError(`${id}: closed by broker`) }
        if (!this.connected) onConnack(this, 'closed before CONNACK')
        this.closed = true
        this.connected = false
      })
    }

    publish (now: number): void {
      const pid = this.nextPid = (this.nextPid % 65535) + 1
      const payload = encodeCbor({ seq: ++this.seq, boot, ts: wireUint(Date.now()), values: VALUES })
      this.out.push(publishQos1(this.topic, pid, payload))
      this.inflight.push(pid, now)
      all.sent++
      if (now >= measureStart && now < measureEnd) win.sent++
    }

    flush (): void {
      this.dirty = false
      const n = this.out.length
      if (n === 0 || !this.connected) { this.out.length = 0; return }
      this.sock.write(n === 1 ? this.out[0]! : Buffer.concat(this.out))
      this.out = []
    }

    onPuback (pid: number): void {
      const now = performance.now()
      const { t, ordered } = this.inflight.ack(pid)
      if (t < 0) { all.unexpectedAcks++; return }
      if (!ordered) all.outOfOrderAcks++ // [MQTT-4.6.0-2] PUBACKs in publish order
      all.acked++
      if (now >= measureStart && now < measureEnd) win.acked++
      if (t >= measureStart && t < measureEnd) { hist.recordMs(now - t); secHist.recordMs(now - t) }
      if (now >= measureStart && now < measureEnd) secAcks++
      if (!open && (phase === 'warmup' || phase === 'measure')) this.publish(now)
    }
  }

  // Publishes released by PUBACKs are written once per event-loop turn per connection,
  // after every socket readable in this turn was read: one write syscall carries many
  // publishes when the broker answers with one PUBACK per segment.
  const dirty: Conn[] = []
  let flushScheduled = false
  const flushDirty = (): void => {
    flushScheduled = false
    for (const c of dirty) c.flush()
    dirty.length = 0
  }
  function scheduleFlush (c: Conn): void {
    if (c.out.length === 0) return
    if (!c.dirty) { c.dirty = true; dirty.push(c) }
    if (!flushScheduled) { flushScheduled = true; setImmediate(flushDirty) }
  }

  const conns: Conn[] = []
  const ids = Array.from({ length: nConn }, (_, i) => `${prefix}${String(i).padStart(5, '0')}`)
  const concurrency = Math.max(1, num(f, 'connect-concurrency'))
  const t0 = performance.now()
  let next = 0
  let done = 0
  let failedConnect = false

  const connectTimer = setTimeout(() => {
    noteError(`only ${done - all.connectErrors} of ${nConn} connections up after ${num(f, 'connect-timeout-s')} s`)
    finish()
  }, num(f, 'connect-timeout-s') * 1000)

  const onConnack = (c: Conn, err?: string): void => {
    if (c.settled) return
    c.settled = true
    done++
    if (err) { all.connectErrors++; noteError(`${c.id}: connect: ${err}`); failedConnect = true }
    if (next < nConn) conns.push(new Conn(ids[next++]!, onConnack))
    if (done === nConn) {
      clearTimeout(connectTimer)
      if (failedConnect && all.connectErrors === nConn) finish()
      else start()
    }
  }
  while (next < Math.min(concurrency, nConn)) conns.push(new Conn(ids[next++]!, onConnack))

  let connectMs = 0
  let cpu0 = process.cpuUsage()
  let elu0 = performance.eventLoopUtilization()
  let pacing: NodeJS.Timeout | undefined
  let progress: NodeJS.Timeout | undefined
  let maxLagMs = 0
  const pinger = setInterval(() => { for (const c of conns) if (c.connected) c.sock.write(PINGREQ) }, (KEEPALIVE_S / 2) * 1000)

  function start (): void {
    connectMs = performance.now() - t0
    phase = 'warmup'
    emit({ type: 'phase', phase, connected: conns.filter((c) => c.connected).length, connectMs: Math.round(connectMs) })
    const live = conns.filter((c) => c.connected)
    const tStart = performance.now()
    if (!open) {
      for (const c of live) {
        const now = performance.now()
        for (let k = 0; k < window; k++) c.publish(now)
        c.flush()
      }
    } else {
      let scheduled = 0
      let cursor = 0
      const tick = (): void => {
        if (phase !== 'warmup' && phase !== 'measure') return
        const now = performance.now()
        const due = Math.floor((now - tStart) * rate / 1000) - scheduled
        if (due > 0) {
          const lag = (due - 1) * 1000 / rate
          if (now >= measureStart && lag > maxLagMs) maxLagMs = lag
          const touched = new Set<Conn>()
          for (let k = 0; k < due; k++) {
            const c = live[cursor]!
            cursor = (cursor + 1) % live.length
            scheduled++
            if (!c.connected) { all.skipped++; continue }
            if (c.inflight.live >= maxInflight) { all.skipped++; continue }
            c.publish(now)
            touched.add(c)
          }
          for (const c of touched) c.flush()
        }
        pacing = setTimeout(tick, 1)
      }
      tick()
    }
    if (bool(f, 'progress')) {
      let last = all.acked
      progress = setInterval(() => { process.stderr.write(`loadgen: ${phase} ${all.acked - last} acks/s, ${conns.reduce((s, c) => s + c.inflight.live, 0)} in flight\n`); last = all.acked }, 1000)
    }
    setTimeout(() => {
      phase = 'measure'
      measureStart = performance.now()
      measureEnd = measureStart + durationMs
      cpu0 = process.cpuUsage()
      elu0 = performance.eventLoopUtilization()
      emit({ type: 'phase', phase })
      secHist.reset()
      secAcks = 0
      const secTimer = setInterval(closeSecond, 1000)
      setTimeout(() => { clearInterval(secTimer); closeSecond(); drain() }, durationMs)
    }, warmupMs)
  }

  function closeSecond (): void {
    if (timeline.length >= Math.ceil(durationMs / 1000)) return
    const x = secHist.summary()
    timeline.push({ acks: secAcks, p50Ms: x.p50Ms, p99Ms: x.p99Ms, maxMs: x.maxMs })
    secHist.reset()
    secAcks = 0
  }

  let cpuPct = 0
  let elu = 0
  function drain (): void {
    phase = 'drain'
    const cpu = process.cpuUsage(cpu0)
    cpuPct = Math.round((cpu.user + cpu.system) / 10 / durationMs * 10) / 10
    elu = Math.round(performance.eventLoopUtilization(elu0).utilization * 1000) / 1000
    emit({ type: 'phase', phase })
    const deadline = performance.now() + drainMs
    const check = (): void => {
      const outstanding = conns.reduce((s, c) => s + (c.connected ? c.inflight.live : 0), 0)
      if (outstanding === 0 || performance.now() > deadline) finish()
      else setTimeout(check, 10)
    }
    check()
  }

  let finished = false
  function finish (): void {
    if (finished) return
    finished = true
    phase = 'done'
    clearTimeout(connectTimer)
    clearTimeout(pacing)
    clearInterval(progress)
    clearInterval(pinger)
    const unacked = conns.reduce((s, c) => s + c.inflight.live, 0)
    const windowMs = Number.isFinite(measureStart) ? durationMs : 0
    const lat = hist.summary()
    const result: LoadResult = {
      type: 'result',
      mode: open ? 'open' : 'closed',
      connections: nConn,
      inflight: open ? null : window,
      rate: open ? rate : null,
      durationS: durationMs / 1000,
      warmupS: warmupMs / 1000,
      connected: conns.filter((c) => c.connected).length,
      connectMs: Math.round(connectMs),
      sent: all.sent,
      acked: all.acked,
      windowSent: win.sent,
      windowAcked: win.acked,
      msgsPerSec: windowMs ? Math.round(win.acked / (windowMs / 1000)) : 0,
      sendPerSec: windowMs ? Math.round(win.sent / (windowMs / 1000)) : 0,
      latency: lat,
      maxScheduleLagMs: open ? Math.round(maxLagMs * 1000) / 1000 : null,
      loadgenCpuPct: cpuPct,
      loadgenElu: elu,
      errors: {
        connect: all.connectErrors,
        socket: all.socketErrors,
        disconnects: all.disconnects,
        unacked,
        outOfOrderAcks: all.outOfOrderAcks,
        unexpectedAcks: all.unexpectedAcks,
        skipped: all.skipped
      },
      errorSamples,
      timeline
    }
    emit(result as unknown as Record<string, unknown>)
    for (const c of conns) {
      c.closed = true
      if (c.connected) c.sock.end(DISCONNECT)
      else c.sock.destroy()
    }
    // Sockets that do not close promptly must not keep the generator alive.
    setTimeout(() => process.exit(0), 1000).unref()
  }

  const abort = (): void => { finish(); setTimeout(() => process.exit(130), 200).unref() }
  process.once('SIGINT', abort)
  process.once('SIGTERM', abort)
}

main()
