/**
 * Metrics of the MQTT upstream (docs/design.md section 9, docs/upstream-mqtt.md). Registered
 * by every flusher, so `/metrics` has the same names whatever the upstream; they stay 0
 * without an MQTT one. How long results take is gateway_upstream_request_seconds, as for
 * HTTP (publish to results, or to PUBACK in broker mode).
 */
import { Counter } from 'prom-client'
import type { Metrics } from '../metrics/index.ts'
import type { MqttUpstreamEvents, MqttUpstreamStatus } from './mqtt-upstream.ts'

/** Registers the gauges (read from `status` at scrape time); returns the counters the upstream reports its events to. */
export function mqttMetrics (metrics: Metrics, status: () => MqttUpstreamStatus | undefined): MqttUpstreamEvents {
  metrics.gauge('gateway_upstream_mqtt_connected', '1 while connected to the MQTT upstream broker (0 also without an MQTT upstream)', [], (g) => g.set(status()?.connected ? 1 : 0))
  metrics.gauge('gateway_upstream_mqtt_in_flight_batches', 'Batches published to the MQTT upstream waiting for their PUBACK (broker ack) or results', [], (g) => g.set(status()?.inFlight ?? 0))
  metrics.gauge('gateway_upstream_mqtt_oldest_unanswered_seconds', 'Age of the oldest batch waiting for its answer from the MQTT upstream (0: none)', [], (g) => g.set((status()?.oldestUnansweredMs ?? 0) / 1000))
  metrics.gauge('gateway_upstream_mqtt_unacked_batches', 'Batches published to the MQTT upstream broker and not PUBACKed yet (held by the MQTT client until then; at most twice --max-in-flight)', [], (g) => g.set(status()?.unacked ?? 0))
  metrics.gauge('gateway_upstream_mqtt_unacked_bytes', 'Payload bytes of the batches published to the MQTT upstream broker and not PUBACKed yet', [], (g) => g.set(status()?.unackedBytes ?? 0))
  const ignored = new Counter({ name: 'gateway_upstream_mqtt_ignored_results_total', help: 'Results messages ignored: late (for a batch no longer waited for: answered, timed out, or of an earlier run), unreadable, oversized (longer than an answer to the batch can be) or too_many (more results than the batch has items); the last two are not decoded', labelNames: ['reason'], registers: [metrics.registry] })
  const noSubscribers = new Counter({ name: 'gateway_upstream_mqtt_no_subscribers_total', help: 'Batches whose PUBACK said no matching subscribers (MQTT 5 reason 0x10): no consumer subscribed; kept and sent again unless --upstream-accept-no-subscribers', registers: [metrics.registry] })
  return { ignored: (reason) => ignored.inc({ reason }), noSubscribers: () => noSubscribers.inc() }
}
