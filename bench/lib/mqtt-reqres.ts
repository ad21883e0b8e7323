/**
 * The baseline of the commands bench: a bare MQTT request/response round trip through a
 * broker (Mosquitto), nothing durable. `responders` clients (client id = device id,
 * persistent sessions, as the simulated devices) subscribe at QoS 1 to
 * `devices/{id}/commands` and answer each command on `devices/{id}/commands/answers` at QoS
 * 1; one requester publishes commands at QoS 1 to random responders at `rate` per second,
 * open loop, and times each until its answer arrives. Same codecs as the real path
 * (protocol/commands.ts), JSON.
 */
import mqtt, { type MqttClient } from 'mqtt'
import { answersTopic, commandsTopic, decodeDeviceAnswer, decodeDeviceCommand, encodeDeviceAnswer, encodeDeviceCommand } from '../../protocol/commands.ts'

export type ReqResResult = { sent: number, answered: number, sentPerS: number, p50Ms: number | null, p99Ms: number | null, maxMs: number | null }

const connect = (url: string, clientId: string, clean: boolean): Promise<MqttClient> => new Promise((resolve, reject) => {
  const c = mqtt.connect(url, { clientId, clean, protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 30_000 })
  c.once('connect', () => resolve(c))
  c.once('error', reject)
})

export async function reqResRoundTrip (opts: { url: string, responders: number, rate: number, durationS: number, idPrefix?: string, graceMs?: number }): Promise<ReqResResult> {
  const prefix = opts.idPrefix ?? 'rr-'
  const ids = Array.from({ length: opts.responders }, (_, i) => `${prefix}${String(i).padStart(4, '0')}`)
  const responders: MqttClient[] = []
  try {
    for (let i = 0; i < ids.length; i += 50) {
      const batch = await Promise.all(ids.slice(i, i + 50).map(async (id) => {
        const c = await connect(opts.url, id, false)
        c.on('message', (_t, payload) => {
          const cmd = decodeDeviceCommand(payload)
          c.publish(answersTopic(id), encodeDeviceAnswer({ id: cmd.id, ok: true, result: { pong: true, at: Date.now() } }, 'json'), { qos: 1 })
        })
        await c.subscribeAsync(commandsTopic(id), { qos: 1 })
        return c
      }))
      responders.push(...batch)
    }
    const req = await connect(opts.url, `${prefix}requester`, true)
    responders.push(req)
    const started = new Map<string, number>()
    const rtts: number[] = []
    req.on('message', (_t, payload) => {
      const a = decodeDeviceAnswer(payload)
      const t0 = started.get(a.id)
      if (t0 === undefined) return
      started.delete(a.id)
      rtts.push(performance.now() - t0)
    })
    await req.subscribeAsync(answersTopic('+'), { qos: 1 })
    let n = 0
    const t0 = performance.now()
    const endAt = t0 + opts.durationS * 1000
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const now = performance.now()
        const due = Math.floor((Math.min(now, endAt) - t0) * opts.rate / 1000)
        while (n < due) {
          const id = `q${n}`
          const dev = ids[Math.floor(Math.random() * ids.length)]!
          started.set(id, performance.now())
          req.publish(commandsTopic(dev), encodeDeviceCommand({ id, name: 'ping', args: null, expiresAt: Date.now() + 60_000 }, 'json'), { qos: 1 })
          n++
        }
        if (now >= endAt) { clearInterval(timer); resolve() }
      }, 5)
    })
    const graceUntil = performance.now() + (opts.graceMs ?? 10_000)
    while (started.size > 0 && performance.now() < graceUntil) await new Promise((resolve) => setTimeout(resolve, 50))
    rtts.sort((a, b) => a - b)
    const pct = (q: number): number | null => rtts.length ? Math.round(rtts[Math.min(rtts.length - 1, Math.floor(q * rtts.length))]! * 100) / 100 : null
    return { sent: n, answered: rtts.length, sentPerS: Math.round(n / opts.durationS * 10) / 10, p50Ms: pct(0.5), p99Ms: pct(0.99), maxMs: rtts.length ? Math.round(rtts.at(-1)! * 100) / 100 : null }
  } finally {
    for (const c of responders) c.end(true)
  }
}
