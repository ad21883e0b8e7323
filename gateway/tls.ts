/**
 * The gateway's TLS and secret settings (docs/security-tls.md): checked once with the rest
 * of the config, then turned into what the broker listeners and the upstream client take.
 *
 * - MQTT over TLS: `--tls-cert` + `--tls-key` turn on the TLS listener on `--tls-port`
 *   (8883 by default); `--tls-ca` lets clients authenticate with a certificate and
 *   `--tls-require-client-cert` makes one mandatory; `--tls-crl` revokes device certificates.
 *   `--no-mqtt` turns the plain listener off.
 * - Upstream: an `http://` upstream to a host that is not loopback sends the bearer token
 *   and the readings in clear, so it is a startup error unless `--allow-insecure-upstream`.
 *   `--upstream-ca` / `--upstream-cert` / `--upstream-key` configure the https client (mTLS).
 * - Secrets: `--token-file` keeps the bearer token off the command line (`ps` shows argv to
 *   every local user).
 */
import { readFile } from 'node:fs/promises'
import type { ConfigOf } from '../common/index.ts'
import { ConfigError } from '../protocol/index.ts'
import { kebab } from '../common/index.ts'
import { isLoopback } from '../protocol/loopback.ts'
import { secretProblem } from '../protocol/secrets.ts'
import type { brokerSchema } from './broker/config.ts'
import type { TlsListenerConfig } from './broker/listeners.ts'
import type { flushSchema } from './flush/config.ts'
import type { UpstreamTls } from './flush/http-upstream.ts'

export const DEFAULT_TLS_PORT = 8883

/**
 * The flags these read, typed from the schemas that declare them (the broker's listener, the
 * flusher's upstream): config.ts, which joins the schemas, calls `checkTlsConfig`, so this
 * file does not import it back.
 */
type TlsFields = Pick<ConfigOf<typeof brokerSchema>, 'mqtt' | 'tlsPort' | 'tlsCert' | 'tlsKey' | 'tlsCa' | 'tlsCrl' | 'tlsRequireClientCert'> &
  Pick<ConfigOf<typeof flushSchema>, 'upstream' | 'token' | 'tokenFile' | 'upstreamCa' | 'upstreamCert' | 'upstreamKey' | 'allowInsecureUpstream'>

export function checkTlsConfig (c: TlsFields): void {
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) throw new ConfigError(c.tlsCert === undefined ? 'tlsCert' : 'tlsKey', 'the MQTT TLS listener needs both --tls-cert and --tls-key')
  if (c.tlsCert === undefined && (c.tlsPort !== undefined || c.tlsCa !== undefined || c.tlsCrl !== undefined || c.tlsRequireClientCert)) {
    throw new ConfigError('tlsCert', '--tls-port, --tls-ca, --tls-crl and --tls-require-client-cert need --tls-cert and --tls-key')
  }
  if (c.tlsCrl !== undefined && c.tlsCa === undefined) throw new ConfigError('tlsCrl', '--tls-crl needs --tls-ca (the CA whose revoked device certificates it lists)')
  if (c.tlsRequireClientCert && c.tlsCa === undefined) throw new ConfigError('tlsCa', '--tls-require-client-cert needs --tls-ca (the CA that signs device certificates)')
  if (!c.mqtt && c.tlsCert === undefined) throw new ConfigError('mqtt', '--no-mqtt turns the plain listener off: give --tls-cert and --tls-key for a TLS one, or no MQTT listener is left')
  if ((c.upstreamCert === undefined) !== (c.upstreamKey === undefined)) throw new ConfigError(c.upstreamCert === undefined ? 'upstreamCert' : 'upstreamKey', 'upstream mTLS needs both --upstream-cert and --upstream-key')
  if (c.token !== '' && c.tokenFile !== undefined) throw new ConfigError('tokenFile', 'give --token or --token-file, not both')
  for (const u of c.upstream) {
    const url = new URL(u)
    if (url.protocol === 'http:' && !isLoopback(url.hostname) && !c.allowInsecureUpstream) {
      throw new ConfigError('upstream', `${u}: http:// to a host that is not loopback sends the token and the readings in clear; use https:// (with --upstream-ca for a private CA), or --allow-insecure-upstream on a network you trust`)
    }
  }
  if (c.upstream.length > 0 && c.token === '' && c.tokenFile === undefined && c.upstreamCert === undefined) {
    throw new ConfigError('token', '--upstream needs --token or --token-file (the bearer token the ingest maps to this gateway id), or a client certificate (--upstream-cert and --upstream-key)')
  }
}

/** The TLS listener's settings, or null when none is configured. */
export function tlsListenerConfig (c: TlsFields): TlsListenerConfig | null {
  if (c.tlsCert === undefined || c.tlsKey === undefined) return null
  return { port: c.tlsPort ?? DEFAULT_TLS_PORT, certPath: c.tlsCert, keyPath: c.tlsKey, caPath: c.tlsCa, crlPath: c.tlsCrl, requireClientCert: c.tlsRequireClientCert }
}

/**
 * A file a flag names, read at startup. A failure is a config error naming the flag (and
 * so the config file key, `field`) and the path, with `hint` saying how to make the file:
 * a bare ENOENT did not say which of a config file's paths was missing.
 */
export async function readConfigFile (field: string, path: string, hint = ''): Promise<Buffer> {
  try { return await readFile(path) } catch (err) { throw new ConfigError(field, `--${kebab(field)} ${path}: cannot read it: ${(err as Error).message}${hint ? `; ${hint}` : ''}`, { cause: err }) }
}

/** The bearer token: `--token`, or the first line of `--token-file`. */
export async function resolveToken (c: TlsFields): Promise<string> {
  if (c.tokenFile === undefined) return c.token
  const token = (await readConfigFile('tokenFile', c.tokenFile)).toString('utf8').split(/\r?\n/)[0]!.trim()
  if (token === '' || /\s/.test(token)) throw new ConfigError('tokenFile', `${c.tokenFile}: the first line must hold the token (non-empty, no spaces)`)
  const problem = secretProblem(token)
  if (problem !== null) throw new ConfigError('tokenFile', `${c.tokenFile}: the token ${problem}`)
  return token
}

/** CA, client certificate and key of the upstream client, read from their files. */
export async function loadUpstreamTls (c: TlsFields): Promise<UpstreamTls> {
  const out: UpstreamTls = {}
  if (c.upstreamCa !== undefined) out.ca = await readConfigFile('upstreamCa', c.upstreamCa)
  if (c.upstreamCert !== undefined) out.cert = await readConfigFile('upstreamCert', c.upstreamCert)
  if (c.upstreamKey !== undefined) out.key = await readConfigFile('upstreamKey', c.upstreamKey)
  return out
}
