/**
 * The gateway's connections to a cloud MQTT broker (the readings' upstream, mqtt-upstream.ts,
 * and the commands' link, gateway/commands/link-mqtt.ts) are made alike: every `--upstream`
 * URL a server MQTT.js moves through on reconnect, a persistent session (clean start 0: what
 * the broker holds for us outlives a connection), the token as the password, TLS with the
 * CA, client certificate and ALPN of the flags, and no automatic resubscribe (each client
 * subscribes itself on every CONNACK and checks the grant).
 */
import type { IClientOptions } from 'mqtt'
import type { UpstreamTls } from './http-upstream.ts'

/** MQTT 5 PUBACK reason 0x10: the broker delivered the message to nobody. */
export const NO_MATCHING_SUBSCRIBERS = 16

export type MqttClientFields = {
  urls: string[]
  clientId: string
  protocolVersion: 4 | 5
  /** wait between connection attempts */
  reconnectMs: number
  connectTimeoutMs: number
  username: string
  /** '' = none */
  password: string
  tls?: UpstreamTls
  alpn: string[]
}

/** MQTT.js options of a persistent-session client; `properties`: MQTT 5 CONNECT properties. */
export function persistentClientOptions (c: MqttClientFields, properties: Record<string, number>): IClientOptions {
  const servers = c.urls.map((u) => {
    const url = new URL(u)
    const tls = url.protocol === 'mqtts:'
    return { host: url.hostname, port: Number(url.port || (tls ? 8883 : 1883)), protocol: tls ? 'mqtts' as const : 'mqtt' as const }
  })
  return {
    ...servers[0],
    servers,
    clientId: c.clientId,
    clean: false, // [MQTT-3.1.2-4] the session and what is queued in it outlive a connection
    protocolVersion: c.protocolVersion,
    ...(c.protocolVersion === 5 ? { properties } : {}),
    reconnectPeriod: c.reconnectMs,
    connectTimeout: c.connectTimeoutMs,
    keepalive: 30,
    resubscribe: false,
    ...(c.password !== '' ? { username: c.username, password: c.password } : {}),
    ...(c.tls?.ca ? { ca: c.tls.ca } : {}),
    ...(c.tls?.cert ? { cert: c.tls.cert, key: c.tls.key } : {}),
    ...(c.alpn.length ? { ALPNProtocols: c.alpn } : {}),
    rejectUnauthorized: true
  }
}

/** A CONNACK refusal of our credentials (3.1.1: 4 bad user name or password, 5 not authorized; MQTT 5: 0x86, 0x87). */
export function isAuthRefusal (err: Error): boolean {
  const code = (err as Error & { code?: unknown }).code
  return code === 4 || code === 5 || code === 134 || code === 135
}
