/**
 * device-sim configuration: one schema, validated once (flags, `SIM_*` env, `--config`
 * JSON file). docs/design.md section 9 fixes `--broker`, `--devices`, `--rate`, `--count`,
 * `--duration`, `--payload`, `--churn`, `--id-prefix`, `--report`, `--audit`.
 */
import { ConfigError } from '../protocol/index.ts'
import { parseConfig, type ConfigOf, type ConfigSources } from '../common/index.ts'

export const ENV_PREFIX = 'SIM'

export const simSchema = {
  broker: { type: 'string', default: 'mqtt://127.0.0.1:1883', pattern: /^(mqtts?|tcp|tls|wss?):\/\//, doc: 'MQTT broker URL (the gateway)' },
  ca: { type: 'string', doc: 'PEM CA that signed the gateway certificate (mqtts:// broker)' },
  cert: { type: 'string', doc: 'PEM client certificate of each device; {id} is replaced by the device id (certs/{id}.pem)' },
  key: { type: 'string', doc: 'PEM private key of --cert; {id} is replaced by the device id' },
  devices: { type: 'int', default: 10, min: 1, max: 1_000_000, doc: 'number of simulated devices' },
  rate: { type: 'number', default: 1, min: 0.001, max: 1000, doc: 'readings per second per device' },
  count: { type: 'int', default: 0, min: 0, doc: 'readings per device, then stop (0 = no limit)' },
  duration: { type: 'number', default: 0, min: 0, doc: 'seconds to run, then stop (0 = no limit; with neither, run until SIGINT)' },
  payload: { type: 'enum', values: ['cbor', 'json'], default: 'cbor', doc: 'payload encoding of readings: a CBOR map or a JSON object' },
  qos: { type: 'int', default: 1, min: 0, max: 1, doc: 'MQTT QoS of readings (0 = at most once: nothing is acknowledged)' },
  inflight: { type: 'int', default: 16, min: 1, max: 65535, doc: 'max unacknowledged publishes in flight per device' },
  maxQueue: { type: 'int', default: 10_000, min: 1, doc: 'max unacknowledged readings a device keeps in memory; when full, new readings are skipped (counted)' },
  churn: { type: 'number', default: 0, min: 0, max: 1, doc: 'probability per device per second of a churn event (disconnect or reboot)' },
  rebootRatio: { type: 'number', default: 0.25, min: 0, max: 1, doc: 'share of churn events that are reboots (new boot, unacknowledged queue lost)' },
  reconnectDelayMs: { type: 'int', default: 500, min: 0, max: 600_000, doc: 'delay before a device reconnects after a disconnect or reboot (jittered, doubled on failure up to 10x)' },
  connectRate: { type: 'number', default: 2000, min: 1, doc: 'max new connections per second at start (avoids a connection storm)' },
  connectTimeoutS: { type: 'number', default: 15, min: 0.1, doc: 'fail (exit 2) when no device has connected within this many seconds of the start' },
  keepaliveS: { type: 'int', default: 60, min: 0, max: 65535, doc: 'MQTT keepalive in seconds' },
  idPrefix: { type: 'string', default: 'sim-', pattern: /^[A-Za-z0-9._-]{0,50}$/, doc: 'device id prefix; ids are {prefix}{index, zero-padded}' },
  boot: { type: 'int', default: 0, min: 0, doc: 'first boot id of every device (0 = wall-clock ms at start, so each run has fresh boots)' },
  seed: { type: 'int', default: 1, min: 0, doc: 'random seed of sensor models and churn' },
  receipts: { type: 'bool', default: true, doc: 'subscribe to devices/{id}/receipts and measure end-to-end confirmation latency' },
  stopGraceMs: { type: 'int', default: 3000, min: 0, doc: 'at stop, how long to wait for PUBACKs of readings in flight before disconnecting' },
  report: { type: 'string', doc: 'write the JSON report (per device) to this file' },
  audit: { type: 'string', pattern: /^https?:\/\//, doc: 'ingest base URL: after the run, check every acknowledged reading is stored exactly once' },
  auditToken: { type: 'string', doc: 'read token of the ingest for --audit (authorization: Bearer)' },
  gatewayAdmin: { type: 'string', pattern: /^https?:\/\//, doc: 'gateway admin base URL: before the audit, wait until /status shows buffered.items == 0' },
  auditTimeoutS: { type: 'number', default: 60, min: 0, doc: 'max seconds to wait for the gateway to drain before auditing' },
  auditConcurrency: { type: 'int', default: 8, min: 1, max: 256, doc: 'devices audited in parallel' },
  commands: { type: 'bool', default: true, doc: 'each device keeps a persistent session (clean=false), subscribes to devices/{id}/commands at QoS 1, executes each command id at most once and answers on devices/{id}/commands/answers (docs/commands.md)' },
  commandsRate: { type: 'number', default: 0, min: 0, max: 100_000, doc: 'commands per second in total sent to the ingest\'s command API (--commands-ingest) for random online devices: synchronous, asynchronous and deferred mixed (0 = off)' },
  commandsIngest: { type: 'string', pattern: /^https?:\/\//, doc: 'ingest base URL of the command API (POST /v1/devices/{id}/commands); default: --audit' },
  commandToken: { type: 'string', doc: 'command token for the ingest\'s command API (authorization: Bearer); none on an ingest that allows anonymous commands' },
  commandsWaitMs: { type: 'int', default: 10_000, min: 1, max: 600_000, doc: 'the ?wait=MS of synchronous commands' },
  commandsTtlMs: { type: 'int', default: 60_000, min: 1000, doc: 'ttlMs of each command sent' },
  commandsKinds: { type: 'string', default: 'sync,async,deferred', pattern: /^(sync|async|deferred)(,(sync|async|deferred))*$/, doc: 'kinds of commands sent, in turn: sync (?wait), async (then GET /v1/commands/{id} until final), deferred (reconciled through the GET /v1/commands feed)' },
  commandsFinalTimeoutS: { type: 'number', default: 60, min: 0, doc: 'at the end, max seconds to wait for every command sent to reach a final state before the command audit' },
  progress: { type: 'enum', values: ['auto', 'tty', 'line', 'off'], default: 'auto', doc: 'live progress: redrawn in place on a TTY (stderr), else a log line every --progress-interval-s' },
  progressIntervalS: { type: 'number', default: 5, min: 0.25, doc: 'seconds between progress lines when not on a TTY' },
  help: { type: 'bool', default: false, doc: 'print this help' }
} as const

export type SimConfig = ConfigOf<typeof simSchema>

export function parseSimConfig (src: Omit<ConfigSources, 'envPrefix'>): SimConfig {
  const c = parseConfig(simSchema, { ...src, envPrefix: ENV_PREFIX })
  if (c.count > 0 && c.duration > 0) throw new ConfigError('count', 'give --count or --duration, not both')
  if ((c.cert === undefined) !== (c.key === undefined)) throw new ConfigError(c.cert === undefined ? 'cert' : 'key', 'a client certificate needs both --cert and --key')
  return c
}

/** A full config from defaults plus overrides (library use, tests). */
export function simConfig (overrides: Partial<SimConfig> = {}): SimConfig {
  const file: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(overrides)) if (v !== undefined) file[k] = v
  return parseSimConfig({ argv: [], env: {}, file })
}
