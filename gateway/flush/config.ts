/**
 * Flusher configuration: the gateway flags the flusher reads (the gateway's schema spreads
 * this one). Batching, concurrency, the upstream client and its retry policy.
 */
import type { ConfigOf } from '../../protocol/index.ts'

export const flushSchema = {
  upstream: { type: 'list', default: [], doc: 'Ingest base URL(s), comma-separated; failover in order' },
  upstreamSpread: { type: 'bool', default: false, doc: 'Spread partitions over the --upstream URLs (stateless ingests on one database) instead of failover in order' },
  token: { type: 'string', default: '', doc: 'Bearer token for the ingest' },
  batchMaxItems: { type: 'int', default: 500, min: 1, max: 100000, doc: 'Items per upstream batch' },
  batchMaxBytes: { type: 'int', default: 256 * 1024, min: 1024, max: 64 * 1024 * 1024, doc: 'Bytes per upstream batch (item bytes)' },
  lingerMs: { type: 'int', default: 1000, min: 0, max: 600000, doc: 'How long a partial batch waits for more items' },
  maxInFlight: { type: 'int', default: 4, min: 1, max: 1024, doc: 'Partitions sending a batch at the same time' },
  requestTimeoutMs: { type: 'int', default: 30000, min: 100, doc: 'Upstream request timeout' },
  gzip: { type: 'bool', default: false, doc: 'Same as --compression gzip (kept for old configs)' },
  upstreamProtocol: { type: 'enum', values: ['auto', 'v1', 'v2'] as const, default: 'auto', doc: 'Upstream protocol: v2 (columnar, docs/protocol-v2.md) when the ingest offers it, else v1; or forced' },
  compression: { type: 'enum', values: ['auto', 'none', 'gzip', 'deflate', 'br'] as const, default: 'auto', doc: 'Upstream body compression; auto: brotli where the ingest offers it, else gzip' },
  retryBaseMs: { type: 'int', default: 200, min: 1, doc: 'First upstream retry delay (exponential backoff with jitter)' },
  retryMaxMs: { type: 'int', default: 30000, min: 1, doc: 'Longest upstream retry delay' },
  authRetryMs: { type: 'int', default: 30000, min: 10, doc: 'Pause after the upstream refused our token (401/403)' },
  unreadyAfterMs: { type: 'int', default: 30000, min: 0, doc: '/readyz reports unready after the upstream failed this long' },
  receipts: { type: 'bool', default: true, doc: 'Publish receipts to devices/{id}/receipts' }
} as const

/** The flusher's flags plus the gateway id it sends upstream. */
export type FlushConfig = ConfigOf<typeof flushSchema> & { gatewayId: string }
