/**
 * MQTT clients from a chosen loopback source address (127.0.0.2, ...): the gateway then sees
 * a distinct client address without leaving 127.0.0.0/8, which is how tests exercise
 * per-address rules (local networks, takeover, back-off) on one machine.
 */
import { createConnection } from 'node:net'
import { MqttClient, type IClientOptions } from 'mqtt'

type T = { after: (fn: () => unknown) => void }

/** Connects from `localAddress`; rejects with the CONNACK error or when the socket closes first. */
export function connectFrom (t: T, port: number, localAddress: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const c = new MqttClient(() => createConnection({ host: '127.0.0.1', port, localAddress }), { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, keepalive: 60, clean: true, ...opts })
  t.after(() => c.endAsync(true).catch(() => {}))
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c))
    c.once('error', (err) => { c.end(true); reject(err) })
    c.once('close', () => reject(new Error('connection closed before CONNACK')))
  })
}

/** The value of one sample of a metric in the gateway's registry (0 when absent). */
export async function metricValue (registry: { getSingleMetricAsString: (name: string) => Promise<string> }, name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await registry.getSingleMetricAsString(name).catch(() => '')
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`)
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return 0
}
