/**
 * A well-behaved device for bench/fuzz.ts, in its own process so the fuzzer's CPU does not
 * show up as its latency: one QoS 1 CBOR reading to devices/{id}/readings every
 * `--every-ms`, PUBACK latency per reading. Prints one JSON line a second
 * ({"msg":"tick",acked,p99Ms,maxMs,connected}) and, on SIGTERM (after up to 2 s for the PUBACKs
 * still due), {"msg":"done",...} with the whole run's figures; it reconnects if the broker drops it (and counts that).
 *
 * Run: node --import tsx bench/lib/good-device.ts --port N [--id good] [--every-ms 20]
 */
import mqtt from 'mqtt'
import { encodeCbor, wireUint } from '../../protocol/index.ts'
import { Histogram } from '../../common/index.ts'

const arg = (k: string, d: string): string => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? process.argv[i + 1]! : d }
const port = Number(arg('port', '1883'))
const id = arg('id', 'good')
const everyMs = Number(arg('every-ms', '20'))

const all = new Histogram()
let tick = new Histogram()
let seq = 0
let acked = 0
let disconnects = 0
let unacked = 0
let sender: NodeJS.Timeout | undefined
const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: id, clean: true, reconnectPeriod: 500, connectTimeout: 5000 })
c.on('close', () => { disconnects++ })
const out = (o: Record<string, unknown>): void => { process.stdout.write(JSON.stringify(o) + '\n') }
c.once('connect', () => {
  out({ msg: 'ready', mqttPort: port })
  sender = setInterval(() => {
    const t0 = performance.now()
    unacked++
    c.publish(`devices/${id}/readings`, encodeCbor({ seq: ++seq, boot: 1, ts: wireUint(Date.now()), values: { t: 21.5 } }), { qos: 1 }, (err) => {
      if (err) return
      unacked--
      acked++
      const ms = performance.now() - t0
      all.recordMs(ms)
      tick.recordMs(ms)
    })
  }, everyMs)
  setInterval(() => {
    out({ msg: 'tick', acked, sent: seq, p99Ms: tick.quantileMs(0.99), maxMs: tick.maxUs / 1000, connected: c.connected })
    tick = new Histogram()
  }, 1000)
})
async function stop (): Promise<void> {
  // stop sending, then give the readings in flight up to 2 s for their PUBACKs: a reading
  // sent just before the stop is not a lost one
  clearInterval(sender)
  for (let waited = 0; unacked > 0 && waited < 2000; waited += 10) await new Promise((r) => setTimeout(r, 10))
  out({ msg: 'done', sent: seq, acked, unacked, disconnects: Math.max(0, disconnects), p50Ms: all.quantileMs(0.5), p99Ms: all.quantileMs(0.99), p999Ms: all.quantileMs(0.999), maxMs: all.maxUs / 1000 })
  c.end(true, () => process.exit(0))
  setTimeout(() => process.exit(0), 1000).unref()
}
process.once('SIGTERM', () => { void stop() })
