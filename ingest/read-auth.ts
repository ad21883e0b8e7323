/**
 * The ingest's read side (docs/security-tls.md): who may call the query API, `/v1/stats`,
 * the page's data `/ui/live` and `/metrics`, and which readings they see.
 *
 * Fleets. Every gateway belongs to one fleet: `--token GATEWAY_ID:SECRET` puts it in fleet
 * `default`; a `--tokens-file` entry may name another (`"gw7": { "secret": "...", "fleet":
 * "north" }`), and an entry without a secret (`"gw8": { "fleet": "north" }`) lists a gateway
 * that authenticates with its client certificate only. A client certificate whose CN is
 * not listed is refused (403): the CA proves who a gateway is, the tokens config says it
 * may write and into which fleet. Readings
 * are scoped by fleet: a query answers only readings written by the gateways of the read
 * token's fleet, so a gateway of one fleet cannot plant or read readings under another
 * fleet's device ids, while a redundant pair of gateways in one fleet still serves the same
 * devices. Within a fleet, `?gateway=ID` narrows a query to one gateway.
 *
 * Read tokens. `--read-token FLEET:SECRET` (repeatable) or `--read-tokens-file` (JSON
 * `{ "FLEET": "secret" | ["secret", ...] }`) bind a bearer token to a fleet; fleet `*` sees
 * every fleet and is the only one that may read `/metrics` (process-wide figures). With no
 * read token configured the read side is open only on a loopback listener (`npm start`, tests)
 * or with `--allow-anonymous-read`; anything else is a startup error. `/healthz` needs
 * nothing: it says only that the process answers.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { ConfigError } from '../protocol/index.ts'
import { isLoopback } from '../protocol/loopback.ts'
import { secretProblem } from '../protocol/secrets.ts'
import type { IngestConfig } from './config.ts'
import { HttpError } from './errors.ts'
import { COUNT_KINDS, DEFAULT_FLEET, zeroCounts, type Stats } from './sinks/types.ts'

/** How a token secret is kept in memory and looked up: its sha256, hex (write tokens, server.ts; read tokens, here). */
export const hashSecret = (secret: string): string => createHash('sha256').update(secret).digest('hex')

// The sinks key readings by fleet (natural key), so they and this file share the constant.
export { DEFAULT_FLEET }
export const ALL_FLEETS = '*'
const FLEET_RE = /^[A-Za-z0-9._-]{1,64}$/

/** What a read request may see: one fleet, or all of them. */
export type ReadScope = { fleet: string }

type ReadAuthFields = Pick<IngestConfig, 'host' | 'token' | 'tokensFile' | 'readToken' | 'readTokensFile' | 'allowAnonymousRead'>

export class ReadAuth {
  private constructor (
    /** sha256(secret) hex -> fleet */
    private readonly tokens: Map<string, string>,
    private readonly gatewayFleet: Map<string, string>,
    private readonly anonymous: boolean
  ) {}

  static async create (cfg: ReadAuthFields): Promise<ReadAuth> {
    const tokens = new Map<string, string>()
    const add = (field: string, fleet: string, secret: unknown): void => {
      if (fleet !== ALL_FLEETS && !FLEET_RE.test(fleet)) throw new ConfigError(field, `fleet ${JSON.stringify(fleet)} must match ${FLEET_RE} or be *`)
      const problem = typeof secret === 'string' ? secretProblem(secret) : 'must be text'
      if (problem !== null || typeof secret !== 'string') throw new ConfigError(field, `${field === 'readToken' ? '--read-token' : `--read-tokens-file ${cfg.readTokensFile}`}: read token of fleet ${fleet} ${problem}`)
      tokens.set(hashSecret(secret), fleet)
    }
    for (const t of cfg.readToken) {
      const i = t.indexOf(':')
      if (i <= 0) throw new ConfigError('readToken', `${JSON.stringify(t.slice(0, 40))} must be FLEET:SECRET (FLEET * = every fleet)`)
      add('readToken', t.slice(0, i), t.slice(i + 1))
    }
    if (cfg.readTokensFile !== undefined) {
      const obj = await readJsonObject('readTokensFile', cfg.readTokensFile)
      for (const [fleet, v] of Object.entries(obj)) for (const s of Array.isArray(v) ? v : [v]) add('readTokensFile', fleet, s)
    }
    if (tokens.size === 0 && !cfg.allowAnonymousRead && !isLoopback(cfg.host)) {
      throw new ConfigError('readToken', `the query API, /v1/stats, the page data and /metrics would be open to anyone who reaches ${cfg.host}: give --read-token FLEET:SECRET or --read-tokens-file (or --allow-anonymous-read on a network you trust)`)
    }
    return new ReadAuth(tokens, await gatewayFleets(cfg), tokens.size === 0)
  }

  fleetOf (gateway: string): string { return this.gatewayFleet.get(gateway) ?? DEFAULT_FLEET }
  isKnownGateway (gateway: string): boolean { return this.gatewayFleet.has(gateway) }
  listsAnyGateway (): boolean { return this.gatewayFleet.size > 0 }
  /** Every gateway the tokens config lists. */
  listedGateways (): string[] { return [...this.gatewayFleet.keys()] }

  /** The scope of a read request; 401 without a valid read token (when tokens are configured). */
  scope (req: IncomingMessage): ReadScope {
    if (this.anonymous) return { fleet: ALL_FLEETS }
    const h = req.headers.authorization
    const m = h === undefined ? null : /^Bearer +(\S+) *$/i.exec(h)
    const fleet = m ? this.tokens.get(hashSecret(m[1]!)) : undefined
    if (fleet === undefined) throw new HttpError(401, 'unauthorized', h === undefined ? 'the read side needs authorization: Bearer READ_TOKEN' : 'unknown read token', { field: 'authorization', headers: { 'www-authenticate': 'Bearer' } })
    return { fleet }
  }

  requireAllFleets (scope: ReadScope, what: string): void {
    if (scope.fleet !== ALL_FLEETS) throw new HttpError(403, 'forbidden', `${what} needs a read token of fleet * (this one is bound to fleet ${scope.fleet})`, { field: 'authorization' })
  }

  /**
   * The gateways whose readings this scope may see, narrowed to `gateway` when given;
   * undefined = no restriction (fleet * without ?gateway=).
   */
  gateways (scope: ReadScope, gateway: string | undefined): string[] | undefined {
    if (scope.fleet === ALL_FLEETS) return gateway === undefined ? undefined : [gateway]
    if (gateway !== undefined) {
      if (this.fleetOf(gateway) !== scope.fleet || !this.gatewayFleet.has(gateway)) throw new HttpError(403, 'forbidden', `gateway ${JSON.stringify(gateway.slice(0, 64))} is not in fleet ${scope.fleet}`, { field: 'gateway' })
      return [gateway]
    }
    return [...this.gatewayFleet].filter(([, f]) => f === scope.fleet).map(([g]) => g)
  }

  /** Stats restricted to the scope's gateways (totals summed over them). */
  scopeStats (stats: Stats, scope: ReadScope): Stats {
    if (scope.fleet === ALL_FLEETS) return stats
    const out: Stats = { ...zeroCounts(), gateways: {} }
    for (const [gw, c] of Object.entries(stats.gateways)) {
      if (this.fleetOf(gw) !== scope.fleet || !this.gatewayFleet.has(gw)) continue
      out.gateways[gw] = { ...c }
      for (const k of COUNT_KINDS) out[k] += c[k]
    }
    return out
  }
}

async function readJsonObject (field: string, path: string): Promise<Record<string, unknown>> {
  let obj: unknown
  try { obj = JSON.parse(await readFile(path, 'utf8')) } catch (err) { throw new ConfigError(field, `cannot read ${path} as JSON: ${(err as Error).message}`) }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new ConfigError(field, `${path} must hold a JSON object`)
  return obj as Record<string, unknown>
}

/** gateway id -> fleet, from `--token` (fleet default) and `--tokens-file` entries. */
async function gatewayFleets (cfg: Pick<IngestConfig, 'token' | 'tokensFile'>): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  const put = (gw: string, fleet: string): void => {
    if (!FLEET_RE.test(fleet)) throw new ConfigError('tokensFile', `fleet ${JSON.stringify(fleet)} of gateway ${gw} must match ${FLEET_RE}`)
    const prev = out.get(gw)
    if (prev !== undefined && prev !== fleet) throw new ConfigError('tokensFile', `gateway ${gw} is given to fleets ${prev} and ${fleet}`)
    out.set(gw, fleet)
  }
  for (const t of cfg.token) { const i = t.indexOf(':'); if (i > 0) put(t.slice(0, i), DEFAULT_FLEET) }
  if (cfg.tokensFile !== undefined) {
    for (const [gw, v] of Object.entries(await readJsonObject('tokensFile', cfg.tokensFile))) {
      const fleet = v !== null && typeof v === 'object' && !Array.isArray(v) && 'fleet' in v ? (v as { fleet: unknown }).fleet : DEFAULT_FLEET
      if (typeof fleet !== 'string') throw new ConfigError('tokensFile', `fleet of gateway ${gw} must be a string`)
      put(gw, fleet)
    }
  }
  return out
}
