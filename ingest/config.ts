/**
 * Ingest configuration (docs/design.md section 9): flags `--kebab-case`, env `INGEST_*`, JSON
 * file `--config`. Validated once at startup; errors are ConfigError naming the field.
 */
import { readFile } from 'node:fs/promises'
import { ConfigError, DEFAULT_BATCH_TOPIC, DEFAULT_RESULTS_TOPIC } from '../protocol/index.ts'
import { configFileArg, helpText, parseConfig, type ConfigOf, type Schema, LOG_ENV_HELP } from '../common/index.ts'
import { secretProblem } from '../protocol/secrets.ts'

export const ENV_PREFIX = 'INGEST'

export const schema = {
  port: { type: 'int', default: 8080, min: 0, max: 65535, doc: 'HTTP port (0 picks a free one)' },
  host: { type: 'string', default: '127.0.0.1', doc: 'address to listen on (0.0.0.0 or :: to accept remote gateways)' },
  dataDir: { type: 'string', default: './data/ingest', doc: 'LevelDB directory of the leveldb sink' },
  sink: { type: 'enum', values: ['leveldb', 'postgres'] as const, default: 'leveldb', doc: 'where readings are stored: leveldb (embedded, in --data-dir) or postgres (docs/postgres.md)' },
  postgresUrl: { type: 'string', doc: 'PostgreSQL connection URL (sink postgres; else DATABASE_URL or --postgres-url-file)' },
  postgresUrlFile: { type: 'string', doc: 'file holding the PostgreSQL connection URL (keeps the password off the command line)' },
  postgresPoolMax: { type: 'int', default: 10, min: 1, max: 1000, doc: 'PostgreSQL connections per ingest process' },
  token: { type: 'list', doc: 'GATEWAY_ID:SECRET (SECRET at least 16 characters) accepted as "authorization: Bearer SECRET" for that gateway; repeatable' },
  tokensFile: { type: 'string', doc: 'JSON file { "gatewayId": "secret", ... }, merged with --token' },
  maxBodyBytes: { type: 'int', default: 8 * 1024 * 1024, min: 1024, max: 1024 * 1024 * 1024, doc: 'largest request body, after gzip decompression' },
  protocols: { type: 'list', default: ['1', '2'], doc: 'upstream protocol versions served: 1 (/v1/batches) and 2 (/v2/batches, columnar); "1" alone behaves as an ingest that predates v2' },
  maxItems: { type: 'int', default: 10000, min: 1, max: 1_000_000, doc: 'most items in one batch (413 above)' },
  maxConcurrentRequests: { type: 'int', default: 64, min: 1, max: 100_000, doc: 'batches processed at once; more get 503 + Retry-After' },
  requestTimeoutMs: { type: 'int', default: 30_000, min: 1000, max: 600_000, doc: 'time to receive headers and body of a request (slow clients are cut off)' },
  shutdownTimeoutMs: { type: 'int', default: 10_000, min: 0, max: 600_000, doc: 'on SIGTERM, how long in-flight requests may take before connections are closed' },
  tlsCert: { type: 'string', doc: 'PEM certificate (chain): serve HTTPS instead of HTTP; reloaded on SIGHUP' },
  tlsKey: { type: 'string', doc: 'PEM private key of --tls-cert' },
  tlsCa: { type: 'string', doc: 'PEM CA of gateway client certificates: a verified certificate\'s CN is the gateway id (docs/security-tls.md)' },
  tlsRequireClientCert: { type: 'bool', default: false, doc: 'refuse TLS clients without a certificate signed by --tls-ca (then every gateway needs one)' },
  readToken: { type: 'list', doc: 'FLEET:SECRET read token (at least 16 characters) for the query API, /v1/stats, the page data /ui/live and /metrics (fleet * = every fleet); repeatable' },
  readTokensFile: { type: 'string', doc: 'JSON file { "FLEET": "secret" | ["secret", ...] } of read tokens, merged with --read-token' },
  allowAnonymousRead: { type: 'bool', default: false, doc: 'with no read token, serve the read side to anyone even on a non-loopback --host' },
  authFreeFailures: { type: 'int', default: 10, min: 0, max: 1_000_000, doc: 'wrong tokens (gateway or read) from one address before its back-off starts (auth-backoff.ts)' },
  authBackoffBaseMs: { type: 'int', default: 1000, min: 0, max: 3_600_000, doc: 'first back-off after --auth-free-failures wrong tokens, doubling with each further one; meanwhile that address gets 429 + Retry-After (0 = off)' },
  authBackoffMaxMs: { type: 'int', default: 60_000, min: 0, max: 86_400_000, doc: 'longest back-off of an address (it also bounds how long a gateway behind the same NAT as a guesser waits)' },
  authTrackedAddresses: { type: 'int', default: 10_000, min: 16, max: 10_000_000, doc: 'addresses remembered for the back-off (least recently failed forgotten first)' },
  maxPartitions: { type: 'int', default: 1024, min: 1, max: 65536, doc: 'partitions 0..N-1 accepted per gateway epoch: items beyond are rejected, floors or evicted ranges beyond get 400' },
  dedupEpochsPerGateway: { type: 'int', default: 4, min: 1, max: 1024, doc: 'dedup state of at most this many epochs per gateway is held in memory (least recently used ones reload from disk)' },
  maxResponseBytes: { type: 'int', default: 4 * 1024 * 1024, min: 4096, max: 256 * 1024 * 1024, doc: 'a query page stops at about this many bytes of readings (continue with its next cursor)' },
  chaosRetryRate: { type: 'number', default: 0, min: 0, max: 1, doc: 'fault injection: share of items answered 2 (retry) instead of stored' },
  chaosRejectRate: { type: 'number', default: 0, min: 0, max: 1, doc: 'fault injection: share of items answered 3 (rejected) and not stored' },
  chaosFailRate: { type: 'number', default: 0, min: 0, max: 1, doc: 'fault injection: share of batches answered 503 (some with Retry-After) or 500 before storing' },
  chaosDropRate: { type: 'number', default: 0, min: 0, max: 1, doc: 'fault injection: share of batches committed, then the connection destroyed without an answer' },
  chaosLatencyMs: { type: 'int', default: 0, min: 0, max: 600_000, doc: 'fault injection: delay after the commit, before the answer' },
  chaosSeed: { type: 'int', min: 0, max: 0xffffffff, doc: 'seed of the fault injection PRNG (random when unset; logged)' },
  mqttBroker: { type: 'string', doc: 'mqtt:// or mqtts:// URL of a cloud broker: take gateways\' batches from it too and publish their results there (docs/upstream-mqtt.md)' },
  mqttTopic: { type: 'string', default: DEFAULT_BATCH_TOPIC, doc: 'batch topic template of the gateways ({gatewayId} and {partition} are whole levels); subscribed with + in their place' },
  mqttResultsTopic: { type: 'string', default: DEFAULT_RESULTS_TOPIC, doc: 'topic template the per-item results are published to, at QoS 1, after the commit' },
  mqttShareGroup: { type: 'string', default: 'ingest', doc: 'shared subscription group ($share/GROUP/...) so several ingests split the batches; empty: a plain subscription' },
  mqttClientId: { type: 'string', default: '', doc: 'MQTT client id (default ingest-{hostname}); stable and distinct per ingest process: its session keeps batches while it is away' },
  mqttConnections: { type: 'int', default: 4, min: 1, max: 64, doc: 'broker connections in the share group, each taking one batch at a time, so one process stores several at once (client ids {--mqtt-client-id}-0, -1...; 1: the id itself)' },
  mqttAllowUnlistedGateways: { type: 'bool', default: false, doc: 'take batches from the broker for gateways the tokens config does not list (--token, --tokens-file): they all write into fleet default, so any of them can write readings under any device id of that fleet; off: such batches are refused 403 in their results' },
  mqttReconnectMs: { type: 'int', default: 1000, min: 100, max: 600_000, doc: 'wait between connection attempts while the broker is unreachable' },
  mqttUsername: { type: 'string', default: 'ingest', doc: 'MQTT user name (sent with --mqtt-password-file)' },
  mqttPasswordFile: { type: 'string', doc: 'file holding the MQTT password (one line)' },
  mqttCa: { type: 'string', doc: 'PEM CA(s) trusted for an mqtts:// broker (default: the system CAs)' },
  mqttCert: { type: 'string', doc: 'PEM client certificate presented to the broker (mTLS)' },
  mqttKey: { type: 'string', doc: 'PEM private key of --mqtt-cert' },
  commandToken: { type: 'list', doc: 'FLEET:SECRET command token (at least 16 characters) for the command API /v1/devices/{id}/commands and /v1/commands (fleet * = every fleet; docs/commands.md); repeatable' },
  commandTokensFile: { type: 'string', doc: 'JSON file { "FLEET": "secret" | ["secret", ...] } of command tokens, merged with --command-token' },
  allowAnonymousCommands: { type: 'bool', default: false, doc: 'with no command token, open the command API to anyone even on a non-loopback --host (every fleet)' },
  commandTtlMs: { type: 'int', default: 3_600_000, min: 1000, max: 365 * 86_400_000, doc: 'TTL of a command whose request gives no ttlMs' },
  commandMaxTtlMs: { type: 'int', default: 7 * 86_400_000, min: 1000, max: 365 * 86_400_000, doc: 'largest ttlMs a command may ask for (400 above)' },
  commandMaxWaitMs: { type: 'int', default: 300_000, min: 0, max: 3_600_000, doc: 'largest ?wait=MS of POST /v1/devices/{id}/commands (longer waits are cut to it)' },
  commandMaxArgsBytes: { type: 'int', default: 4096, min: 2, max: 1024 * 1024, doc: 'largest args of a command, JSON-encoded (413 args_too_large above)' },
  commandMaxPendingPerDevice: { type: 'int', default: 100, min: 1, max: 1_000_000, doc: 'open (not final) commands per device (429 too_many_pending above)' },
  commandRate: { type: 'number', default: 50, min: 0.001, max: 1_000_000, doc: 'commands created per second per command token (a bucket of twice as many; 429 rate_limited + Retry-After above)' },
  commandResendMs: { type: 'int', default: 30_000, min: 100, max: 3_600_000, doc: 'with --mqtt-broker: publish a gateway\'s commands again this often until it reports them at-gateway' },
  commandExpiryGraceMs: { type: 'int', default: 60_000, min: 0, max: 86_400_000, doc: 'a command held by a gateway that has not reported it final by expiresAt + this is recorded expired by the ingest itself' },
  presenceTtlMs: { type: 'int', default: 90_000, min: 1000, max: 86_400_000, doc: 'a gateway not heard from (poll or reports) for this long counts as connecting no device (POST ...?offline=fail)' },
  help: { type: 'bool', doc: 'print this help and exit' }
} as const satisfies Schema

export type IngestConfig = ConfigOf<typeof schema>

/** Input of createIngest: a parsed config, with any field left out taking its default. */
export type IngestOptions = Partial<IngestConfig>

export function withDefaults (opts: IngestOptions): IngestConfig {
  return { ...parseConfig(schema, { argv: [], env: {}, envPrefix: ENV_PREFIX }), ...opts }
}

/** Parses argv, env and `--config FILE`. */
export async function loadConfig (argv: readonly string[], env: Record<string, string | undefined>): Promise<IngestConfig> {
  const file = configFileArg(argv, env, ENV_PREFIX)
  let fileObj: Record<string, unknown> | undefined
  if (file !== undefined) {
    let text: string
    try { text = await readFile(file, 'utf8') } catch (err) { throw new ConfigError('config', `cannot read ${file}: ${(err as Error).message}`) }
    try { fileObj = JSON.parse(text) as Record<string, unknown> } catch (err) { throw new ConfigError('config', `${file} is not JSON: ${(err as Error).message}`) }
    if (fileObj === null || typeof fileObj !== 'object' || Array.isArray(fileObj)) throw new ConfigError('config', `${file} must hold a JSON object`)
  }
  return parseConfig(schema, { argv, env, file: fileObj, envPrefix: ENV_PREFIX })
}

const GATEWAY_ID_RE = /^[^:\s]{1,64}$/

/**
 * Resolves `token` and `tokensFile` into secret -> gateway id. A secret names exactly one
 * gateway; a gateway may have several secrets (rotation).
 */
export async function resolveTokens (cfg: Pick<IngestConfig, 'token' | 'tokensFile' | 'tlsCa'> & { mqttBroker?: string | undefined }): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const add = (field: string, gw: string, secret: string): void => {
    if (!GATEWAY_ID_RE.test(gw)) throw new ConfigError(field, `gateway id ${JSON.stringify(gw)} must be 1..64 characters without ':' or spaces`)
    const problem = secretProblem(secret)
    if (problem !== null) throw new ConfigError(field, `${field === 'token' ? '--token' : `--tokens-file ${cfg.tokensFile}`}: secret for gateway ${gw} ${problem}`)
    const prev = out.get(secret)
    if (prev !== undefined && prev !== gw) throw new ConfigError(field, `the same secret is given to gateways ${prev} and ${gw}`)
    out.set(secret, gw)
  }
  for (const t of cfg.token) {
    const i = t.indexOf(':')
    if (i <= 0) throw new ConfigError('token', `${JSON.stringify(t.slice(0, 80))} must be GATEWAY_ID:SECRET`)
    add('token', t.slice(0, i), t.slice(i + 1))
  }
  if (cfg.tokensFile !== undefined) {
    let obj: unknown
    try { obj = JSON.parse(await readFile(cfg.tokensFile, 'utf8')) } catch (err) { throw new ConfigError('tokensFile', `cannot read ${cfg.tokensFile} as JSON: ${(err as Error).message}`) }
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new ConfigError('tokensFile', 'must hold a JSON object { "gatewayId": "secret" }')
    for (const [gw, entry] of Object.entries(obj)) {
      // "gw": "secret", or "gw": { "secret"?: "...", "fleet"?: "..." } (read-auth.ts; no secret: client certificate only)
      const secret: unknown = entry !== null && typeof entry === 'object' && !Array.isArray(entry) ? (entry as { secret?: unknown }).secret : entry
      if (secret === undefined && typeof entry === 'object') continue
      if (typeof secret !== 'string') throw new ConfigError('tokensFile', `secret of gateway ${gw} must be a string`)
      add('tokensFile', gw, secret)
    }
  }
  // an ingest that only takes batches from a broker needs no HTTP credentials (the broker authenticates)
  if (out.size === 0 && cfg.tlsCa === undefined && cfg.mqttBroker === undefined) throw new ConfigError('token', 'no gateway can authenticate: give --token GATEWAY_ID:SECRET or --tokens-file (or --tls-ca for client certificates)')
  return out
}

/**
 * The PostgreSQL URL of sink postgres: --postgres-url, else --postgres-url-file, else the
 * DATABASE_URL environment variable; undefined for sink leveldb.
 */
export async function resolvePostgresUrl (cfg: Pick<IngestConfig, 'sink' | 'postgresUrl' | 'postgresUrlFile'>, env: Record<string, string | undefined>): Promise<string | undefined> {
  if (cfg.sink !== 'postgres') return undefined
  let url = cfg.postgresUrl
  if (url === undefined && cfg.postgresUrlFile !== undefined) {
    try { url = (await readFile(cfg.postgresUrlFile, 'utf8')).trim() } catch (err) { throw new ConfigError('postgresUrlFile', `cannot read ${cfg.postgresUrlFile}: ${(err as Error).message}`) }
  }
  url ??= env.DATABASE_URL
  if (!url) throw new ConfigError('postgresUrl', 'sink postgres needs --postgres-url, --postgres-url-file or DATABASE_URL')
  if (!/^postgres(ql)?:\/\//.test(url)) throw new ConfigError('postgresUrl', 'must be a postgres:// or postgresql:// URL')
  return url
}

/** `protocols` lists versions this ingest serves: 1 always, 2 optionally. */
export function checkProtocols (cfg: Pick<IngestConfig, 'protocols'>): void {
  for (const v of cfg.protocols) if (v !== '1' && v !== '2') throw new ConfigError('protocols', `unknown protocol version ${JSON.stringify(v)} (1 or 2)`)
  if (!cfg.protocols.includes('1')) throw new ConfigError('protocols', 'must include 1 (gateways that predate v2 speak only v1)')
}

export function usage (): string {
  return `Usage: ingest [flags]\n\nReference cloud ingest of the edge gateway (docs/ingest.md).\n\n${helpText(schema, ENV_PREFIX)}\n  --config <file>\n      JSON file with any of the keys above (camelCase) [env ${ENV_PREFIX}_CONFIG]\n  --version\n      print the version\n\nenvironment:\n${LOG_ENV_HELP}`
}
