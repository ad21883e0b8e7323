/**
 * The one place that picks the upstream transport: `--upstream` URLs that are all mqtt://
 * or mqtts:// make an MQTT upstream (mqtt-upstream.ts), any others the HTTP client
 * (http-upstream.ts); both are a BatchUpstream (answer.ts), and nothing after this knows which.
 * Each transport says how its batches are made (`batching`): the MQTT one resolves
 * compression `auto` for the broker and caps a batch's bytes to one PUBLISH.
 */
import type { Logger } from 'pino'
import type { BatchUpstream } from './answer.ts'
import type { FlushConfig } from './config.ts'
import { HttpUpstream } from './http-upstream.ts'
import { isMqttUrl } from './mqtt-config.ts'
import { MqttUpstream, type MqttUpstreamEvents } from './mqtt-upstream.ts'

export function isMqttUpstream (config: Pick<FlushConfig, 'upstream'>): boolean {
  return config.upstream.length > 0 && config.upstream.every(isMqttUrl)
}

/** The upstream the flags ask for (not started: the Flusher starts it). */
export function createUpstream (config: FlushConfig, log: Logger, mqttEvents?: MqttUpstreamEvents): BatchUpstream {
  const compression = config.gzip ? 'gzip' : config.compression
  if (!isMqttUpstream(config)) {
    return new HttpUpstream({ urls: config.upstream, token: config.token, timeoutMs: config.requestTimeoutMs, maxSockets: config.maxInFlight, spread: config.upstreamSpread, tls: config.upstreamTls },
      { compression, batchMaxBytes: config.batchMaxBytes })
  }
  return new MqttUpstream({
    urls: config.upstream,
    gatewayId: config.gatewayId,
    ackMode: config.upstreamAck,
    topic: config.upstreamTopic,
    resultsTopic: config.upstreamResultsTopic,
    maxMessageBytes: config.upstreamMaxMessageBytes,
    resultsTimeoutMs: config.resultsTimeoutMs,
    publishTimeoutMs: config.requestTimeoutMs,
    clientId: config.upstreamClientId || `gw-${config.gatewayId}`,
    username: config.upstreamUsername || config.gatewayId,
    password: config.token,
    ...(config.upstreamTls ? { tls: config.upstreamTls } : {}),
    alpn: config.upstreamAlpn,
    protocolVersion: config.upstreamMqttVersion === '5' ? 5 : 4,
    reconnectMs: config.upstreamReconnectMs,
    acceptNoSubscribers: config.upstreamAcceptNoSubscribers,
    batchMaxItems: config.batchMaxItems,
    // PUBLISHes waiting for their PUBACK: twice the partitions sending at once (results may overtake a PUBACK)
    maxUnackedBatches: 2 * config.maxInFlight,
    maxUnackedBytes: 2 * config.maxInFlight * config.upstreamMaxMessageBytes,
    compression,
    batchMaxBytes: config.batchMaxBytes
  }, log, mqttEvents)
}
