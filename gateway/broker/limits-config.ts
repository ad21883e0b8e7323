/**
 * The broker's per-client resource limits: one schema block that gateway/config.ts
 * spreads into the gateway's schema, so each is a `--kebab-case` flag, a `GATEWAY_*` env var
 * and a config-file key. Defaults follow Mosquitto 2.x where it has one
 * (`max_queued_messages` 1000, `max_qos` 2, `retain_available` true) and are otherwise sized
 * for a Pi with 1 GiB (docs/security-limits.md: the table, what each bounds, the
 * measurements).
 */
import type { ConfigOf } from '../../common/index.ts'

export const brokerLimitsSchema = {
  retainAvailable: { type: 'bool', default: true, doc: 'Accept retained messages (false: a PUBLISH with RETAIN closes the connection, as Mosquitto retain_available false)' },
  maxRetainedMessages: { type: 'int', default: 1000, min: 0, max: 10_000_000, doc: 'Retained messages kept in all; a retained PUBLISH on a new topic beyond it closes the connection' },
  maxRetainedBytes: { type: 'int', default: 4 * 1024 * 1024, min: 0, max: 1024 ** 3, doc: 'Bytes (topic + payload) of all retained messages; a retained PUBLISH beyond it closes the connection' },
  maxQos: { type: 'int', default: 2, min: 0, max: 2, doc: 'Highest QoS served: subscriptions are granted at most this, a PUBLISH above it closes the connection (Mosquitto max_qos)' },
  maxInflightInbound: { type: 'int', default: 100, min: 1, max: 65535, doc: 'Inbound QoS 2 messages per client awaiting PUBREL; one more closes the connection' },
  maxQueuedMessages: { type: 'int', default: 1000, min: 0, max: 1_000_000, doc: 'Messages queued for one persistent (clean=false) session, offline or unacknowledged; newer ones are dropped for it (Mosquitto max_queued_messages)' },
  maxQueuedBytesTotal: { type: 'int', default: 8 * 1024 * 1024, min: 0, max: 16 * 1024 ** 3, doc: 'Bytes queued for all persistent sessions together (payload + 256 a message); beyond it messages are not queued' },
  maxSessions: { type: 'int', default: 1000, min: 1, max: 10_000_000, doc: 'Persistent sessions kept; beyond it the longest-offline session is removed' },
  sessionExpirySec: { type: 'int', default: 7200, min: 1, max: 366 * 86400, doc: 'A persistent session offline this long is removed (subscriptions, queued messages, QoS 2 state)' },
  maxSubscriptions: { type: 'int', default: 100, min: 1, max: 1_000_000, doc: 'Topic filters one client may hold; more are refused with SUBACK 0x80' },
  maxTopicBytes: { type: 'int', default: 512, min: 16, max: 65535, doc: 'Longest topic or topic filter (UTF-8 bytes): a longer PUBLISH closes the connection, a longer filter gets SUBACK 0x80' },
  maxTopicLevels: { type: 'int', default: 16, min: 1, max: 100, doc: 'Most levels (slash-separated parts) in a topic or filter, handled as maxTopicBytes' },
  maxClientIdBytes: { type: 'int', default: 64, min: 23, max: 65535, doc: 'Longest client id (UTF-8 bytes); a longer CONNECT is refused, the connection closed (the spec lets a server refuse ids over 23 bytes)' },
  maxWillBytes: { type: 'int', default: 4096, min: 0, max: 256 * 1024 * 1024, doc: 'Largest will message (topic + payload); a CONNECT with a larger one is refused' },
  publishRateLimit: { type: 'number', default: 1000, min: 0.1, max: 10_000_000, doc: 'PUBLISH packets per second one client may send on average (token bucket)' },
  publishRateBurst: { type: 'int', default: 2000, min: 1, max: 10_000_000, doc: 'PUBLISH packets one client may send at once above the rate' },
  publishRateAction: { type: 'enum', values: ['slow', 'disconnect'] as const, default: 'slow', doc: 'A client over its rate: slow (its socket is not read until it is back under) or disconnect' }
} as const

/** The parsed limits (every field has a default, so all are present). */
export type BrokerLimits = ConfigOf<typeof brokerLimitsSchema>

export const LIMIT_KEYS = Object.keys(brokerLimitsSchema) as Array<keyof BrokerLimits>

/** The limit fields of a parsed gateway config (which has them all, by the spread above). */
export function pickLimits (c: BrokerLimits): BrokerLimits {
  const out: Record<string, unknown> = {}
  for (const k of LIMIT_KEYS) out[k] = c[k]
  return out as BrokerLimits
}

export const defaultLimits = (): BrokerLimits => {
  const out: Record<string, unknown> = {}
  for (const k of LIMIT_KEYS) out[k] = brokerLimitsSchema[k].default
  return out as BrokerLimits
}
