/**
 * The metrics of the MQTT limits, registered by the broker into the gateway's
 * registry (gateway/metrics/index.ts; the names are contracts, docs/design.md section 9):
 * `gateway_mqtt_limit_exceeded_total` and `gateway_mqtt_limit_offenders_total` by `limit`,
 * sessions expired, deliveries skipped, and scrape-time gauges of what the bounded
 * persistence (persistence.ts) holds.
 *
 * Hits are counted through plain-number cells (gateway/metrics/hot-counter.ts): a hostile
 * fan-out hits a limit once per session per message, and prom-client's label hashing on
 * every `inc({ limit })` showed in the CPU profile. Guarded by
 * test/integration/metrics-doc.test.ts (names) and test/faults/hostile-clients.test.ts.
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import { HotCounter, type HotCell } from '../metrics/hot-counter.ts'
import type { BoundedPersistence } from './persistence.ts'

/**
 * Every limit, by the `limit` label value it is counted under: the names are part of the
 * metrics' contract, so they live with the metrics, and the rules and the offender log take
 * them from here.
 */
export const LIMITS = [
  'client_id_bytes', 'will_bytes', 'topic_bytes', 'topic_levels', 'max_qos', 'retain_unavailable',
  'retained_messages', 'retained_bytes', 'subscriptions', 'queued_messages', 'queued_bytes_total',
  'sessions', 'inflight_inbound', 'publish_rate'
] as const
export type LimitName = (typeof LIMITS)[number]

export class LimitMetrics {
  /** per limit, the cell of `gateway_mqtt_limit_exceeded_total` */
  readonly hits: Record<LimitName, HotCell>
  readonly offenders: Counter<'limit'>
  readonly expired: Counter
  readonly skipped: Counter

  constructor (registry: Registry) {
    const registers = [registry]
    const hot = new HotCounter({ name: 'gateway_mqtt_limit_exceeded_total', help: 'MQTT limit hits by limit (a refused packet, a message not queued or retained, a session evicted, a publish slowed)', label: 'limit', registers })
    this.hits = Object.fromEntries(LIMITS.map((l) => [l, hot.cell(l)])) as Record<LimitName, HotCell>
    this.offenders = new Counter({ name: 'gateway_mqtt_limit_offenders_total', help: 'Distinct offenders logged per limit (one warn line each)', labelNames: ['limit'], registers })
    this.expired = new Counter({ name: 'gateway_mqtt_sessions_expired_total', help: 'Persistent sessions removed after sessionExpirySec offline', registers })
    this.skipped = new Counter({ name: 'gateway_mqtt_deliveries_skipped_total', help: 'Deliveries not written because the client had already gone (writes to closed sockets leak memory)', registers })
    // every limit shows on /metrics from the start, at 0
    for (const l of LIMITS) { hot.counter.inc({ limit: l }, 0); this.offenders.inc({ limit: l }, 0) }
  }

  /** The gauges of what the bounded persistence holds, read at scrape time. */
  watch (registry: Registry, p: BoundedPersistence): void {
    const registers = [registry]
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({ name, help, registers, collect () { this.set(read()) } }) // eslint-disable-line no-new
    }
    gauge('gateway_mqtt_retained_messages', 'Retained messages held', () => p.retainedCount)
    gauge('gateway_mqtt_retained_bytes', 'Bytes (topic + payload) of the retained messages held', () => p.retainedSize)
    gauge('gateway_mqtt_queued_messages', 'Messages queued for persistent sessions (offline or unacknowledged)', () => p.queuedMessages)
    gauge('gateway_mqtt_queued_bytes', 'Bytes queued for persistent sessions (payload + 256 a message)', () => p.queuedSize)
    gauge('gateway_mqtt_sessions', 'Persistent (clean=false) sessions kept, online or offline', () => p.sessionCount)
  }
}
