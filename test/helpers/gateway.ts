/** In-process gateway and MQTT client helpers for integration tests. */
import { pino } from 'pino'
import mqtt, { type MqttClient } from 'mqtt'
import { Gateway, parseGatewayConfig, type GatewayConfig } from '../../gateway/index.ts'
import { encodeCbor, wireUint } from '../../protocol/index.ts'
import { tempDir } from './index.ts'

export const silentLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

type T = { after: (fn: () => unknown) => void }

export async function startGateway (t: T, overrides: Partial<GatewayConfig> = {}): Promise<Gateway> {
  const base = parseGatewayConfig({ argv: [], env: {} })
  const dataDir = overrides.dataDir ?? await tempDir(t)
  const gw = await Gateway.create({ ...base, host: '127.0.0.1', mqttPort: 0, adminPort: 0, ...overrides, dataDir }, silentLogger)
  t.after(() => gw.close())
  return gw
}

export async function connectDevice (t: T, port: number, id: string, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: id, clean: true, reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  t.after(() => c.endAsync(true).catch(() => {}))
  return c
}

export function reading (seq: number | null, extra: Record<string, unknown> = {}): Buffer {
  return encodeCbor({ ...(seq === null ? {} : { seq }), boot: 1, ts: wireUint(Date.now()), values: { t: 21.5, h: 40 }, ...extra })
}

/** Publishes at QoS 1 and resolves on PUBACK; rejects if the connection closes first. */
export function publish (c: MqttClient, topic: string, payload: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onClose = (): void => reject(new Error('connection closed before PUBACK'))
    c.once('close', onClose)
    c.publish(topic, payload, { qos: 1 }, (err) => {
      c.off('close', onClose)
      if (err) reject(err); else resolve()
    })
  })
}
