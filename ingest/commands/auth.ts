/**
 * Who may call the command API (docs/commands.md), on the read side's pattern (read-auth.ts):
 * `--command-token FLEET:SECRET` (repeatable) or `--command-tokens-file` (JSON `{ "FLEET":
 * "secret" | ["secret", ...] }`) bind a bearer token to a fleet; fleet `*` commands every
 * fleet. A command token is neither a read token nor a gateway's token (a secret given to
 * two of these roles is a startup error). With no command token configured the command API
 * is open only on a loopback listener, or with `--allow-anonymous-commands`; anything else
 * is a startup error.
 */
import { readFile } from 'node:fs/promises'
import type { IncomingMessage } from 'node:http'
import { ConfigError } from '../../protocol/index.ts'
import { isLoopback } from '../../protocol/loopback.ts'
import { secretProblem } from '../../protocol/secrets.ts'
import type { IngestConfig } from '../config.ts'
import { HttpError } from '../errors.ts'
import { ALL_FLEETS, hashSecret } from '../read-auth.ts'

const FLEET_RE = /^[A-Za-z0-9._-]{1,64}$/

/** What a command request may do: one fleet or all; `caller` keys its rate limit. */
export type CommandScope = { fleet: string, caller: string }

type Fields = Pick<IngestConfig, 'host' | 'commandToken' | 'commandTokensFile' | 'allowAnonymousCommands' | 'readToken'>

export class CommandAuth {
  private constructor (private readonly tokens: Map<string, string>, private readonly anonymous: boolean) {}

  /** `otherSecrets`: hashes of the gateway and read secrets, which a command token may not reuse. */
  static async create (cfg: Fields, otherSecrets: ReadonlySet<string> = new Set()): Promise<CommandAuth> {
    const tokens = new Map<string, string>()
    const add = (field: string, fleet: string, secret: unknown): void => {
      const where = field === 'commandToken' ? '--command-token' : `--command-tokens-file ${cfg.commandTokensFile}`
      if (fleet !== ALL_FLEETS && !FLEET_RE.test(fleet)) throw new ConfigError(field, `${where}: fleet ${JSON.stringify(fleet)} must match ${FLEET_RE} or be *`)
      const problem = typeof secret === 'string' ? secretProblem(secret) : 'must be text'
      if (problem !== null || typeof secret !== 'string') throw new ConfigError(field, `${where}: command token of fleet ${fleet} ${problem}`)
      const h = hashSecret(secret)
      if (otherSecrets.has(h)) throw new ConfigError(field, `${where}: the command token of fleet ${fleet} is also a gateway or read token; give each role its own secret`)
      tokens.set(h, fleet)
    }
    for (const t of cfg.commandToken) {
      const i = t.indexOf(':')
      if (i <= 0) throw new ConfigError('commandToken', `${JSON.stringify(t.slice(0, 40))} must be FLEET:SECRET (FLEET * = every fleet)`)
      add('commandToken', t.slice(0, i), t.slice(i + 1))
    }
    if (cfg.commandTokensFile !== undefined) {
      let obj: unknown
      try { obj = JSON.parse(await readFile(cfg.commandTokensFile, 'utf8')) } catch (err) { throw new ConfigError('commandTokensFile', `cannot read ${cfg.commandTokensFile} as JSON: ${(err as Error).message}`) }
      if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new ConfigError('commandTokensFile', `${cfg.commandTokensFile} must hold a JSON object`)
      for (const [fleet, v] of Object.entries(obj)) for (const s of Array.isArray(v) ? v as unknown[] : [v]) add('commandTokensFile', fleet, s)
    }
    if (tokens.size === 0 && !cfg.allowAnonymousCommands && !isLoopback(cfg.host)) {
      throw new ConfigError('commandToken', `the command API would let anyone who reaches ${cfg.host} command every device: give --command-token FLEET:SECRET or --command-tokens-file (or --allow-anonymous-commands on a network you trust)`)
    }
    return new CommandAuth(tokens, tokens.size === 0)
  }

  /** The scope of a command request; 401 without a valid command token (when tokens are configured). */
  scope (req: IncomingMessage): CommandScope {
    if (this.anonymous) return { fleet: ALL_FLEETS, caller: `anonymous ${req.socket.remoteAddress ?? ''}` }
    const h = req.headers.authorization
    const m = h === undefined ? null : /^Bearer +(\S+) *$/i.exec(h)
    const hash = m ? hashSecret(m[1]!) : undefined
    const fleet = hash === undefined ? undefined : this.tokens.get(hash)
    if (fleet === undefined) throw new HttpError(401, 'unauthorized', h === undefined ? 'the command API needs authorization: Bearer COMMAND_TOKEN' : 'unknown command token', { field: 'authorization', headers: { 'www-authenticate': 'Bearer' } })
    return { fleet, caller: hash! }
  }
}
