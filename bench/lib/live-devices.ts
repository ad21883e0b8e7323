/**
 * Devices that keep publishing at a fixed total rate while something else happens (the
 * backlog drain of bench/drain.ts), in their own process so the bench's polling does not
 * show up as their latency. Open loop: `--rate R` QoS 1 readings/s in total, round-robin over
 * `--connections N` on a 1 ms schedule, whatever the broker does; PUBACK latency (publish
 * write -> PUBACK read) of every reading in a common/histogram.ts histogram.
 *
 *   node --import tsx bench/lib/live-devices.ts --port N [--connections 100] [--rate 2000] [--id-prefix live-]
 *
 * stdout, one JSON line each: {"msg":"ready"} once every connection has its CONNACK and
 * publishing has begun; on SIGUSR1 the histogram and counters restart (the start of the
 * parent's window); on SIGTERM publishing stops, the readings in flight get up to 2 s for
 * their PUBACKs, then {"msg":"done", sent, acked, unacked, skipped, disconnects, p50Ms,
 * p99Ms, p999Ms, maxMs, count, windowS, cpuUs} (counters and latencies since the last
 * SIGUSR1, acked counting readings sent since then; cpuUs = this process's user + system CPU over that time) and the process exits.
 */
import net from 'node:net'
import { performance } from 'node:perf_hooks'
import { encodeCbor, readingsTopic, wireUint } from '../../protocol/index.ts'
import { Histogram } from '../../common/index.ts'
import { connectPacket, FrameSplitter, PacketType, PINGREQ, publishQos1, topicField } from './mqtt-wire.ts'
import { helpText, num, parseFlags, str, type FlagSpec } from './args.ts'
import { Inflight } from './inflight.ts'

const FLAGS: FlagSpec = {
  port: { type: 'number', doc: 'broker MQTT port on 127.0.0.1' },
  connections: { type: 'number', default: 100, doc: 'devices (MQTT connections)' },
  rate: { type: 'number', default: 2000, doc: 'readings/s in total over all connections' },
  'id-prefix': { type: 'string', default: 'live-', doc: 'device id prefix' },
  'max-inflight': { type: 'number', default: 1000, doc: 'per-connection cap on outstanding publishes (beyond it a scheduled publish is skipped and counted)' }
}

const KEEPALIVE_S = 120
const VALUES = { t: 21.5, h: 40 } as const

function main (): void {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(`usage: node --import tsx bench/lib/live-devices.ts --port N [flags]\n${helpText(FLAGS)}\n`); return }
  const port = num(f, 'port')
  const n = num(f, 'connections')
  const rate = num(f, 'rate')
  const maxInflight = num(f, 'max-inflight')
  const prefix = str(f, 'id-prefix')!
  const boot = Math.floor(Date.now() / 1000)
  const emit = (o: Record<string, unknown>): void => { process.stdout.write(JSON.stringify(o) + '\n') }

  let hist = new Histogram()
  let c = { sent: 0, acked: 0, skipped: 0, disconnects: 0 }
  let t0 = performance.now()
  let cpu0 = process.cpuUsage()
  let stopping = false

  type Dev = { sock: net.Socket, topic: Buffer, inflight: Inflight, splitter: FrameSplitter, seq: number, pid: number, up: boolean }
  const devs: Dev[] = []
  let connected = 0
  for (let i = 0; i < n; i++) {
    const id = `${prefix}${String(i).padStart(5, '0')}`
    const sock = net.connect({ host: '127.0.0.1', port, noDelay: true })
    const d: Dev = { sock, topic: topicField(readingsTopic(id)), inflight: new Inflight(16), splitter: new FrameSplitter(), seq: 0, pid: 0, up: false }
    devs.push(d)
    sock.on('connect', () => { sock.write(connectPacket(id, KEEPALIVE_S)) })
    sock.on('data', (chunk: Buffer) => {
      d.splitter.push(chunk, (type, _flags, body) => {
        if (type === PacketType.Puback) {
          const now = performance.now()
          const { t } = d.inflight.ack((body[0]! << 8) | body[1]!)
          if (t < 0) return
          if (t >= t0) { c.acked++; hist.recordMs(now - t) }
        } else if (type === PacketType.Connack && body[1] === 0 && !d.up) {
          d.up = true
          if (++connected === n) start()
        }
      })
    })
    sock.on('error', () => { /* counted on close */ })
    sock.on('close', () => { if (d.up && !stopping) c.disconnects++; d.up = false })
  }
  const pinger = setInterval(() => { for (const d of devs) if (d.up) d.sock.write(PINGREQ) }, KEEPALIVE_S * 500)

  let pacing: NodeJS.Timeout | undefined
  function start (): void {
    const tStart = performance.now()
    let scheduled = 0
    let cursor = 0
    const tick = (): void => {
      if (stopping) return
      const now = performance.now()
      const due = Math.floor((now - tStart) * rate / 1000) - scheduled
      const touched = new Map<Dev, Buffer[]>()
      for (let k = 0; k < due; k++) {
        const d = devs[cursor]!
        cursor = (cursor + 1) % devs.length
        scheduled++
        if (!d.up || d.inflight.live >= maxInflight) { c.skipped++; continue }
        const pid = d.pid = (d.pid % 65535) + 1
        const payload = encodeCbor({ seq: ++d.seq, boot, ts: wireUint(Date.now()), values: VALUES })
        const list = touched.get(d) ?? []
        list.push(publishQos1(d.topic, pid, payload))
        touched.set(d, list)
        d.inflight.push(pid, now)
        c.sent++
      }
      for (const [d, list] of touched) d.sock.write(list.length === 1 ? list[0]! : Buffer.concat(list))
      pacing = setTimeout(tick, 1)
    }
    tick()
    emit({ msg: 'ready', connections: n, rate })
  }

  process.on('SIGUSR1', () => {
    hist = new Histogram()
    c = { sent: 0, acked: 0, skipped: 0, disconnects: 0 }
    t0 = performance.now()
    cpu0 = process.cpuUsage()
  })
  process.once('SIGTERM', () => {
    stopping = true
    clearTimeout(pacing)
    const end = performance.now()
    const cpu = process.cpuUsage(cpu0)
    const outstanding = (): number => devs.reduce((s, d) => s + (d.up ? d.inflight.live : 0), 0)
    const deadline = end + 2000
    const finish = (): void => {
      if (outstanding() > 0 && performance.now() < deadline) { setTimeout(finish, 10); return }
      const s = hist.summary()
      emit({ msg: 'done', ...c, unacked: outstanding(), count: s.count, p50Ms: s.p50Ms, p99Ms: s.p99Ms, p999Ms: s.p999Ms, maxMs: s.maxMs, windowS: Number(((end - t0) / 1000).toFixed(2)), cpuUs: cpu.user + cpu.system })
      clearInterval(pinger)
      for (const d of devs) d.sock.destroy()
      process.exit(0)
    }
    finish()
  })
}

main()
