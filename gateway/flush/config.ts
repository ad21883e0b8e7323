/**
 * Flusher configuration: the gateway flags the flusher reads (the gateway's schema spreads
 * this one). Batching, concurrency, the upstream client and its retry policy.
 */
import type { ConfigOf } from '../../common/index.ts'
import { mqttUpstreamSchema } from './mqtt-config.ts'
import type { ReceiptFormat } from './receipt-sender.ts'
import type { UpstreamTls } from './http-upstream.ts'

export const flushSchema = {
  upstream: { type: 'list', default: [], doc: 'Ingest base URL(s), comma-separated; failover in order. mqtt:// or mqtts:// URLs: a cloud MQTT broker (docs/upstream-mqtt.md)' },
  upstreamSpread: { type: 'bool', default: false, doc: 'Spread partitions over the --upstream URLs (stateless ingests on one database) instead of failover in order' },
  token: { type: 'string', default: '', doc: 'Bearer token for the ingest (prefer --token-file: the command line is visible to every local user)' },
  tokenFile: { type: 'string', doc: 'File holding the bearer token for the ingest (one line)' },
  upstreamCa: { type: 'string', doc: 'PEM CA(s) trusted for https upstreams (default: the system CAs)' },
  upstreamCert: { type: 'string', doc: 'PEM client certificate for the upstream (mTLS; CN = gateway id)' },
  upstreamKey: { type: 'string', doc: 'PEM private key of --upstream-cert' },
  allowInsecureUpstream: { type: 'bool', default: false, doc: 'Allow http:// upstreams to a non-loopback host (the token and readings travel in clear)' },
  batchMaxItems: { type: 'int', default: 500, min: 1, max: 100000, doc: 'Items per upstream batch: a batch closes at this, --batch-max-bytes or --linger-ms, whichever comes first' },
  batchMaxBytes: { type: 'int', default: 256 * 1024, min: 1024, max: 64 * 1024 * 1024, doc: 'Bytes per upstream batch (item bytes)' },
  lingerMs: { type: 'int', default: 1000, min: 0, max: 600000, doc: 'How long a partial batch waits for more items' },
  maxInFlight: { type: 'int', default: 4, min: 1, max: 1024, doc: 'Partitions sending a batch at the same time' },
  requestTimeoutMs: { type: 'int', default: 30000, min: 100, doc: 'Upstream request timeout; without an answer by then: backoff, then the same items again' },
  gzip: { type: 'bool', default: false, doc: 'Same as --compression gzip (kept for old configs)' },
  upstreamProtocol: { type: 'enum', values: ['auto', 'v1', 'v2'] as const, default: 'auto', doc: 'Upstream protocol: v2 (columnar, docs/protocol-v2.md) when the ingest offers it, else v1; or forced' },
  compression: { type: 'enum', values: ['auto', 'none', 'gzip', 'deflate', 'br'] as const, default: 'auto', doc: 'Upstream body compression; auto: brotli where the ingest offers it, else gzip' },
  retryBaseMs: { type: 'int', default: 200, min: 1, doc: 'First upstream retry delay (exponential backoff with jitter)' },
  retryMaxMs: { type: 'int', default: 30000, min: 1, doc: 'Longest upstream retry delay' },
  authRetryMs: { type: 'int', default: 30000, min: 10, doc: 'Pause after the upstream refused our token (401/403)' },
  unreadyAfterMs: { type: 'int', default: 30000, min: 0, doc: '/readyz reports unready after the upstream failed this long' },
  receipts: { type: 'bool', default: true, doc: 'Publish receipts to devices/{id}/receipts' },
  ...mqttUpstreamSchema
} as const

/** The flusher's flags plus the gateway id it sends upstream. */
export type FlushConfig = ConfigOf<typeof flushSchema> & {
  gatewayId: string
  /** CA / client certificate for https upstreams, read from the files named by the flags (gateway/tls.ts). */
  upstreamTls?: UpstreamTls
  /** The receipt encoding a device gets (the intake knows which devices publish JSON). */
  receiptFormat?: ReceiptFormat
}
