/**
 * HTTPS for the ingest (docs/security-tls.md). `--tls-cert` + `--tls-key` serve HTTPS
 * instead of HTTP on `--port`. `--tls-ca` asks gateways for a client certificate: a
 * certificate verified against that CA authenticates the gateway named by its subject CN
 * (a bearer token, if also sent, must name the same gateway), and as with tokens a batch
 * whose `gateway` differs gets 403. `--tls-require-client-cert` refuses the handshake of a
 * client without one. SIGHUP re-reads the three files for new handshakes
 * (`tls.Server#setSecureContext`); a failed reload keeps the old ones.
 */
import { readFile } from 'node:fs/promises'
import { createServer as createHttp, type IncomingMessage, type RequestListener, type Server, type ServerOptions } from 'node:http'
import { createServer as createHttps, type Server as HttpsServer } from 'node:https'
import { TLSSocket, type SecureContextOptions } from 'node:tls'
import type { Logger } from 'pino'
import { ConfigError } from '../protocol/index.ts'
import type { IngestConfig } from './config.ts'

export type IngestTls = { certPath: string, keyPath: string, caPath: string | undefined, requireClientCert: boolean }

type TlsFields = Pick<IngestConfig, 'tlsCert' | 'tlsKey' | 'tlsCa' | 'tlsRequireClientCert'>

/** The TLS settings, or null for plain HTTP; throws ConfigError on an incomplete set. */
export function ingestTlsConfig (c: TlsFields): IngestTls | null {
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) throw new ConfigError(c.tlsCert === undefined ? 'tlsCert' : 'tlsKey', 'HTTPS needs both --tls-cert and --tls-key')
  if (c.tlsCert === undefined) {
    if (c.tlsCa !== undefined || c.tlsRequireClientCert) throw new ConfigError('tlsCa', '--tls-ca and --tls-require-client-cert need --tls-cert and --tls-key')
    return null
  }
  if (c.tlsRequireClientCert && c.tlsCa === undefined) throw new ConfigError('tlsCa', '--tls-require-client-cert needs --tls-ca (the CA that signs gateway certificates)')
  return { certPath: c.tlsCert, keyPath: c.tlsKey!, caPath: c.tlsCa, requireClientCert: c.tlsRequireClientCert }
}

export async function loadContext (t: IngestTls): Promise<SecureContextOptions> {
  const read = async (field: string, path: string): Promise<Buffer> => {
    try { return await readFile(path) } catch (err) { throw new ConfigError(field, `cannot read ${path}: ${(err as Error).message}`) }
  }
  const [cert, key, ca] = await Promise.all([read('tlsCert', t.certPath), read('tlsKey', t.keyPath), t.caPath === undefined ? undefined : read('tlsCa', t.caPath)])
  return { cert, key, ...(ca ? { ca } : {}) }
}

export type TlsSetup = { config: IngestTls, context: SecureContextOptions }

/** node:http, or node:https with the same options when TLS is configured. */
export function createHttpServer (opts: ServerOptions, tls: TlsSetup | null, handler: RequestListener): Server {
  if (!tls) return createHttp(opts, handler)
  const server: HttpsServer = createHttps({
    ...opts,
    ...tls.context,
    requestCert: tls.config.caPath !== undefined,
    rejectUnauthorized: tls.config.requireClientCert,
    handshakeTimeout: Math.min(opts.requestTimeout ?? 30_000, 30_000)
  }, handler)
  // https.Server has the http.Server surface this module uses (close*Connections, timeouts)
  return server as unknown as Server
}

/** The gateway id a verified client certificate names (its CN), or undefined. */
export function clientCertGateway (req: IncomingMessage): string | undefined {
  const s = req.socket
  if (!(s instanceof TLSSocket) || !s.authorized) return undefined
  const cn = s.getPeerCertificate().subject?.CN
  return typeof cn === 'string' ? cn : Array.isArray(cn) ? String(cn[0]) : undefined
}

/** SIGHUP: new certificate, key and CA for new handshakes; the old ones stay if this fails. */
export async function reloadTls (server: Server, tls: TlsSetup | null, log: Logger): Promise<boolean> {
  if (!tls) return false
  try {
    (server as unknown as HttpsServer).setSecureContext(await loadContext(tls.config))
  } catch (err) {
    log.error({ err, cert: tls.config.certPath }, 'TLS reload failed; the previous certificate stays in use')
    return false
  }
  log.info({ cert: tls.config.certPath, ca: tls.config.caPath }, 'TLS certificate reloaded')
  return true
}
