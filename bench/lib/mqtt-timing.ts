/** Connection timing for benches and tests: how long until the CONNACK (or a refusal, or the close). */
import mqtt from 'mqtt'

export function timedConnect (port: number, opts: mqtt.IClientOptions): Promise<number> {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 30_000, ...opts })
    const done = (): void => { c.end(true); resolve(performance.now() - t0) }
    c.once('connect', done)
    c.once('error', done)
    c.once('close', done)
  })
}
