/**
 * Gateway configuration: one schema (DESIGN.md section 9), read from defaults, a JSON file
 * (`--config`), `GATEWAY_*` env vars and `--kebab-case` flags, validated once at startup.
 */
import { parseConfig, type ConfigOf, type ConfigSources, ConfigError } from '../protocol/index.ts'

export const gatewaySchema = {
  gatewayId: { type: 'string', default: 'gw1', pattern: /^[A-Za-z0-9._-]{1,64}$/, doc: 'Gateway id sent upstream (must match the ingest token)' },
  dataDir: { type: 'string', default: './data/gateway', doc: 'LevelDB store directory' },
  host: { type: 'string', default: '0.0.0.0', doc: 'Address the MQTT listener binds' },
  mqttPort: { type: 'int', default: 1883, min: 0, max: 65535, doc: 'MQTT TCP port (0 = pick a free port)' },
  adminHost: { type: 'string', default: '127.0.0.1', doc: 'Address the admin HTTP server binds' },
  adminPort: { type: 'int', default: 8081, min: 0, max: 65535, doc: 'Admin HTTP port: /healthz /readyz /status /metrics (0 = pick a free port)' },
  adminToken: { type: 'string', default: '', doc: 'Token the admin page and API need (required when --admin-host is not loopback)' },
  adminTokenFile: { type: 'string', doc: 'File holding the admin token (instead of --admin-token)' },
  deviceStatsMax: { type: 'int', default: 10000, min: 0, max: 1_000_000, doc: 'Devices the admin page tracks (least recently seen forgotten first)' },
  upstream: { type: 'list', default: [], doc: 'Ingest base URL(s), comma-separated; failover in order' },
  token: { type: 'string', default: '', doc: 'Bearer token for the ingest' },
  partitions: { type: 'int', default: 8, min: 1, max: 1024, doc: 'Partitions of a new store (fixed at creation)' },
  durability: { type: 'enum', values: ['process', 'power'] as const, default: 'power', doc: 'process: survive kill -9 (no fsync); power: fsync every group commit' },
  ackMode: { type: 'enum', values: ['persisted', 'delivered'] as const, default: 'persisted', doc: 'persisted: PUBACK when on disk; delivered: PUBACK when the ingest stored it' },
  batchMaxItems: { type: 'int', default: 500, min: 1, max: 100000, doc: 'Items per upstream batch' },
  batchMaxBytes: { type: 'int', default: 256 * 1024, min: 1024, max: 64 * 1024 * 1024, doc: 'Bytes per upstream batch (item bytes)' },
  lingerMs: { type: 'int', default: 1000, min: 0, max: 600000, doc: 'How long a partial batch waits for more items' },
  maxInFlight: { type: 'int', default: 4, min: 1, max: 1024, doc: 'Partitions sending a batch at the same time' },
  maxBufferItems: { type: 'int', default: 10_000_000, min: 1, doc: 'Buffer quota in items' },
  maxBufferBytes: { type: 'int', default: 2 * 1024 ** 3, min: 1024, doc: 'Buffer quota in bytes' },
  fullPolicy: { type: 'enum', values: ['block', 'drop-oldest'] as const, default: 'block', doc: 'When the buffer is full: stop acknowledging, or evict the oldest items (reported upstream)' },
  maxBlockedReadings: { type: 'int', default: 1000, min: 0, doc: 'Readings waiting for space (block) before further publishers are disconnected' },
  auth: { type: 'enum', values: ['none', 'file'] as const, default: 'none', doc: 'MQTT authentication' },
  authFile: { type: 'string', doc: 'JSON file of device/app credentials (with --auth file)' },
  maxPayloadBytes: { type: 'int', default: 16 * 1024, min: 64, max: 1024 * 1024, doc: 'Largest reading payload' },
  maxPacketBytes: { type: 'int', default: 64 * 1024, min: 256, max: 256 * 1024 * 1024, doc: 'Largest MQTT packet; larger ones close the connection before they are buffered' },
  maxConnections: { type: 'int', default: 20000, min: 1, doc: 'MQTT connections accepted at once' },
  connectTimeoutMs: { type: 'int', default: 10000, min: 100, doc: 'A connection that sends no CONNECT within this is closed' },
  drainTimeoutMs: { type: 'int', default: 5000, min: 100, doc: 'A client whose socket stays unwritable this long (it does not read) is disconnected; until then it holds up deliveries' },
  dedupCacheDevices: { type: 'int', default: 100000, min: 16, doc: 'Dedup windows kept in memory (others reload from disk)' },
  requestTimeoutMs: { type: 'int', default: 30000, min: 100, doc: 'Upstream request timeout' },
  gzip: { type: 'bool', default: false, doc: 'gzip upstream request bodies' },
  retryBaseMs: { type: 'int', default: 200, min: 1, doc: 'First upstream retry delay (exponential backoff with jitter)' },
  retryMaxMs: { type: 'int', default: 30000, min: 1, doc: 'Longest upstream retry delay' },
  authRetryMs: { type: 'int', default: 30000, min: 10, doc: 'Pause after the upstream refused our token (401/403)' },
  unreadyAfterMs: { type: 'int', default: 30000, min: 0, doc: '/readyz reports unready after the upstream failed this long' },
  receipts: { type: 'bool', default: true, doc: 'Publish receipts to devices/{id}/receipts' },
  shutdownTimeoutMs: { type: 'int', default: 5000, min: 100, doc: 'Graceful shutdown budget' }
} as const

export type GatewayConfig = ConfigOf<typeof gatewaySchema>

export function parseGatewayConfig (src: Omit<ConfigSources, 'envPrefix'>): GatewayConfig {
  const c = parseConfig(gatewaySchema, { ...src, envPrefix: 'GATEWAY' })
  if (c.auth === 'file' && !c.authFile) throw new ConfigError('authFile', '--auth file needs --auth-file PATH')
  for (const u of c.upstream) {
    let url: URL
    try { url = new URL(u) } catch { throw new ConfigError('upstream', `${JSON.stringify(u)} is not a URL`) }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError('upstream', `${u}: only http and https are supported`)
  }
  if (!isLoopback(c.adminHost) && !c.adminToken && !c.adminTokenFile) throw new ConfigError('adminToken', `--admin-host ${c.adminHost} is not loopback: set --admin-token or --admin-token-file`)
  if (c.upstream.length > 0 && !c.token) throw new ConfigError('token', '--upstream needs --token (the bearer token the ingest maps to this gateway id)')
  return c
}

/** True for addresses only this machine can reach. */
export function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}
