/**
 * Gateway configuration: one schema (docs/design.md section 9), read from defaults, a JSON file
 * (`--config`), `GATEWAY_*` env vars and `--kebab-case` flags, validated once at startup.
 * Each component declares the flags it reads in its own config.ts; this file joins them.
 */
import { ConfigError, GATEWAY_ID_RE } from '../protocol/index.ts'
import { parseConfig, type ConfigOf, type ConfigSources, type HelpSection } from '../common/index.ts'
import { brokerSchema } from './broker/config.ts'
import { flushSchema } from './flush/config.ts'
import { commandLinkSchema } from './commands/link-config.ts'
import { checkMqttUpstream, isMqttUrl } from './flush/mqtt-config.ts'
import { intakeSchema } from './intake/config.ts'
import { storeSchema } from './store/config.ts'
import { checkTlsConfig } from './tls.ts'
import { brokerLimitsSchema } from './broker/limits-config.ts'
import { checkAnonymousExposure, checkLocalNetworks, defaultHost, securitySchema } from './broker/security-config.ts'
import { parseMappings, type Mapping } from './mapping/config.ts'
import { isLoopback } from '../protocol/loopback.ts'
import { secretProblem } from '../protocol/secrets.ts'

export const gatewaySchema = {
  gatewayId: { type: 'string', default: 'gw1', pattern: GATEWAY_ID_RE, doc: 'Gateway id sent upstream (must match the ingest token)' },
  ...storeSchema,
  ...brokerSchema,
  adminHost: { type: 'string', default: '127.0.0.1', doc: 'Address the admin HTTP server binds' },
  adminPort: { type: 'int', default: 8081, min: 0, max: 65535, doc: 'Admin HTTP port: /healthz /readyz /status /metrics (0 = pick a free port)' },
  adminToken: { type: 'string', default: '', doc: 'Token the admin page and API need, at least 16 characters (required when --admin-host is not loopback)' },
  adminTokenFile: { type: 'string', doc: 'File holding the admin token (instead of --admin-token)' },
  deviceStatsMax: { type: 'int', default: 10000, min: 0, max: 1_000_000, doc: 'Devices the admin page tracks (least recently seen forgotten first)' },
  ...intakeSchema,
  ...flushSchema,
  ...commandLinkSchema,
  shutdownTimeoutMs: { type: 'int', default: 5000, min: 100, doc: 'Graceful shutdown budget on SIGTERM/SIGINT: writes and PUBACKs in progress finish, LevelDB closes (a second signal exits at once; a repeat within 0.5 s is the same Ctrl-C)' },
  ...securitySchema,
  // per-client MQTT limits (bounds on what one client can make the broker hold): gateway/broker/limits-config.ts, docs/security-limits.md
  ...brokerLimitsSchema
} as const

export type GatewayConfig = ConfigOf<typeof gatewaySchema> & { mappings: Mapping[] }

/**
 * The flags a new user needs first: where readings go, where they are kept, who may publish,
 * the ports. `--help` lists them before the sections.
 */
export const FIRST_FLAGS = ['upstream', 'token', 'tokenFile', 'gatewayId', 'dataDir', 'host', 'mqttPort', 'adminPort', 'auth', 'authFile', 'ackMode', 'durability'] as const

/**
 * The gateway's flags by component, as docs/configuration.md groups them (the section of a
 * flag is the component schema that declares it, `gateway` for this file's own), in the
 * order of their first flag in gatewaySchema.
 */
export function gatewayFlagSections (): HelpSection[] {
  const components: Array<[string, Record<string, unknown>]> = [['store', storeSchema], ['broker', brokerSchema], ['intake', intakeSchema], ['flush', flushSchema], ['commands: link', commandLinkSchema], ['broker: security', securitySchema], ['broker: limits', brokerLimitsSchema]]
  const sections = new Map<string, string[]>()
  for (const k of Object.keys(gatewaySchema)) {
    const title = components.find(([, s]) => k in s)?.[0] ?? 'gateway'
    sections.set(title, [...sections.get(title) ?? [], k])
  }
  return [...sections].map(([title, keys]) => ({ title, keys }))
}

export function parseGatewayConfig (src: Omit<ConfigSources, 'envPrefix'>): GatewayConfig {
  // `mappings` (topic mappings for devices of other shapes, gateway/mapping/) only come from the config file
  const { mappings, ...file } = src.file ?? {}
  const parsed = parseConfig(gatewaySchema, { ...src, ...(src.file ? { file } : {}), envPrefix: 'GATEWAY' })
  const c = { ...parsed, host: parsed.host === '' ? defaultHost(parsed) : parsed.host, mappings: parseMappings(mappings) }
  if (c.auth === 'file' && !c.authFile) throw new ConfigError('authFile', '--auth file needs --auth-file PATH (create it with `gateway passwd FILE add-device ID`)')
  checkAnonymousExposure(c)
  checkLocalNetworks(c.localNetworks)
  for (const u of c.upstream) {
    let url: URL
    try { url = new URL(u) } catch { throw new ConfigError('upstream', `${JSON.stringify(u)} is not a URL`) }
    if (!['http:', 'https:', 'mqtt:', 'mqtts:'].includes(url.protocol)) throw new ConfigError('upstream', `${u}: only http, https, mqtt and mqtts are supported`)
    // the token is the MQTT password: in clear over mqtt:// as over http://
    if (url.protocol === 'mqtt:' && !isLoopback(url.hostname) && url.hostname !== '[::1]' && !c.allowInsecureUpstream) {
      throw new ConfigError('upstream', `${u}: mqtt:// to a host that is not loopback sends the credentials and the readings in clear; use mqtts://, or --allow-insecure-upstream on a network you trust`)
    }
  }
  checkMqttUpstream(c)
  // the http checks (token or client certificate required); an MQTT broker may need neither
  checkTlsConfig({ ...c, upstream: c.upstream.filter((u) => !isMqttUrl(u)) })
  checkSecret('adminToken', '--admin-token', c.adminToken)
  checkSecret('token', '--token (the ingest\'s secret for this gateway, or the MQTT upstream\'s password)', c.token)
  if (!isLoopback(c.adminHost) && !c.adminToken && !c.adminTokenFile) throw new ConfigError('adminToken', `--admin-host ${c.adminHost} is not loopback: set --admin-token or --admin-token-file`)
  return c
}

/** An operator-chosen secret given on the command line, env or config file ('' = not given). */
export function checkSecret (field: string, what: string, secret: string): void {
  const problem = secret === '' ? null : secretProblem(secret)
  if (problem !== null) throw new ConfigError(field, `${what} ${problem}`)
}
