/**
 * Flags of the MQTT upstream (`--upstream mqtt://...` or `mqtts://...`, docs/upstream-mqtt.md).
 * The flush schema spreads these; they are read only when the upstream is an MQTT broker.
 */
import { ConfigError, DEFAULT_BATCH_TOPIC, DEFAULT_RESULTS_TOPIC, checkTopicTemplates } from '../../protocol/index.ts'

export const mqttUpstreamSchema = {
  upstreamAck: { type: 'enum', values: ['results', 'broker'] as const, default: 'results', doc: 'MQTT upstream: results (items deleted, retried or dead-lettered on a consumer\'s per-item results message) or broker (the broker\'s PUBACK accepts the whole batch)' },
  upstreamTopic: { type: 'string', default: DEFAULT_BATCH_TOPIC, doc: 'MQTT upstream: topic of a batch; {gatewayId} and {partition} are whole levels' },
  upstreamResultsTopic: { type: 'string', default: DEFAULT_RESULTS_TOPIC, doc: 'MQTT upstream: topic the per-item results come back on (--upstream-ack results)' },
  upstreamMaxMessageBytes: { type: 'int', default: 128 * 1024, min: 1024, max: 256 * 1024 * 1024, doc: 'MQTT upstream: largest PUBLISH payload (the broker\'s limit; AWS IoT Core: 128 KiB); larger batches are split' },
  resultsTimeoutMs: { type: 'int', default: 30000, min: 100, max: 3_600_000, doc: 'MQTT upstream, --upstream-ack results: a batch without results by then is sent again (then answered duplicate)' },
  upstreamClientId: { type: 'string', default: '', doc: 'MQTT upstream client id (default gw-{gatewayId}); stable, as the session is persistent' },
  upstreamUsername: { type: 'string', default: '', doc: 'MQTT upstream user name (default: the gateway id when a token is set; the token is the password)' },
  upstreamAlpn: { type: 'list', default: [], doc: 'mqtts upstream: ALPN protocol names offered (x-amzn-mqtt-ca for AWS IoT Core on port 443)' },
  upstreamReconnectMs: { type: 'int', default: 1000, min: 100, max: 600_000, doc: 'MQTT upstream: wait between connection attempts while the broker is unreachable (the HTTP upstream retries with --retry-base-ms..--retry-max-ms instead)' },
  upstreamAcceptNoSubscribers: { type: 'bool', default: false, doc: 'MQTT upstream, --upstream-ack broker: RISKS LOSING BATCHES. Delete a batch whose PUBACK says "no matching subscribers" (MQTT 5 reason 0x10) as if it were delivered. Only for a broker whose rule or route consumes the batches without being a subscriber, and that answers 0x10 anyway (EMQX rules, docs/upstream-mqtt.md); without it such a batch is kept and sent again with back-off' },
  upstreamMqttVersion: { type: 'enum', values: ['5', '3.1.1'] as const, default: '5', doc: 'MQTT upstream protocol version (3.1.1 for brokers without 5, e.g. Azure IoT Hub)' }
} as const

export const isMqttUrl = (u: string): boolean => /^mqtts?:\/\//i.test(u)

/** Startup checks of an MQTT upstream: no mixing with http URLs, templates well formed, brotli only where MQTT 5 can mark it. */
export function checkMqttUpstream (c: { upstream: string[], upstreamTopic: string, upstreamResultsTopic: string, compression: string, upstreamAck: string, ackMode: string, upstreamMqttVersion: string }): void {
  const mqtt = c.upstream.filter(isMqttUrl)
  if (mqtt.length === 0) return
  if (mqtt.length !== c.upstream.length) throw new ConfigError('upstream', 'mixes mqtt(s):// and http(s):// URLs; give one kind')
  checkTopicTemplates({ key: 'upstreamTopic', template: c.upstreamTopic }, { key: 'upstreamResultsTopic', template: c.upstreamResultsTopic })
  // delivered promises the device its reading is stored; a broker's PUBACK does not say that
  if (c.ackMode === 'delivered' && c.upstreamAck === 'broker') throw new ConfigError('ackMode', 'delivered needs --upstream-ack results over an MQTT upstream (a broker\'s PUBACK does not mean stored)')
  // MQTT 5 marks br with a user property; 3.1.1 has only the payload's first bytes, and br has no magic
  if (c.compression === 'br' && c.upstreamMqttVersion !== '5') throw new ConfigError('compression', 'br cannot be told from CBOR by its first bytes, and MQTT 3.1.1 has no user property to mark it; use none, gzip or deflate')
}
