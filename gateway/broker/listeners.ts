/**
 * The broker's network listeners: plain MQTT on TCP (`--mqtt-port`, 1883; `--no-mqtt`
 * turns it off) and MQTT over TLS (`--tls-port`, 8883 when `--tls-cert` is set). Both hand
 * every accepted socket to the same `onConnection` (TCP_NODELAY, Aedes, the packet size
 * guard...), so every per-connection rule applies to TLS clients as well; the TLS socket
 * reaches it only after the handshake, which `connectTimeoutMs` bounds.
 *
 * Client certificates (`--tls-ca`): the listener asks for one; with
 * `--tls-require-client-cert` a client without a certificate signed by that CA (or with an
 * expired one) fails the handshake. A verified certificate's subject CN is the client's
 * identity, as Mosquitto's `use_identity_as_username`: `certIdentity` returns it and the
 * broker's authenticate accepts the client as the device CN (no password), provided its
 * MQTT client id equals the CN, so a certificate for `a` cannot publish as `b`. The CN is
 * read once, at the handshake (`readCertIdentity`): later the socket may already be gone.
 *
 * Revocation (`--tls-crl`, so a stolen or retired device certificate can be shut out): PEM
 * CRLs of the device CA(s); OpenSSL then checks every client certificate against them (Node sets X509_V_FLAG_CRL_CHECK | CRL_CHECK_ALL), so a
 * revoked certificate fails the handshake, and so does any certificate whose CA has no CRL in
 * the file, or whose CRL is past its nextUpdate (docs/security-tls.md).
 *
 * SIGHUP: `reloadTls()` reads the certificate, key, CA and CRL files again and swaps them in
 * with `tls.Server#setSecureContext`: new handshakes use the new files, established
 * connections are kept. A reload that fails (missing file, key not matching, a bad CRL) keeps
 * the old context and is logged and counted.
 */
import { readFile } from 'node:fs/promises'
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { createSecureContext, createServer as createTlsServer, TLSSocket, type PeerCertificate, type SecureContextOptions, type Server as TlsServer } from 'node:tls'
import type { Client } from 'aedes'
import type { Logger } from 'pino'
import { listen } from '../listen.ts'
import { Counter } from 'prom-client'
import { ConfigError, isValidDeviceId } from '../../protocol/index.ts'
import type { Metrics } from '../metrics/index.ts'

export type TlsListenerConfig = {
  port: number
  certPath: string
  keyPath: string
  caPath: string | undefined
  /** `--tls-crl`: PEM CRLs of the CA(s) in caPath */
  crlPath: string | undefined
  requireClientCert: boolean
}

export type ListenersConfig = {
  host: string
  /** null: no plain TCP listener (`--no-mqtt`). */
  mqttPort: number | null
  tls: TlsListenerConfig | null
  maxConnections: number
  connectTimeoutMs: number
}

async function loadContext (c: TlsListenerConfig): Promise<SecureContextOptions> {
  const read = async (what: string, path: string): Promise<Buffer> => {
    try { return await readFile(path) } catch (err) { throw new Error(`cannot read the TLS ${what} ${path}: ${(err as Error).message}`, { cause: err }) }
  }
  const [cert, key, ca, crl] = await Promise.all([read('certificate', c.certPath), read('key', c.keyPath), c.caPath === undefined ? undefined : read('CA', c.caPath),
    c.crlPath === undefined ? undefined : loadCrls(c.crlPath)])
  return { cert, key, ...(ca ? { ca } : {}), ...(crl ? { crl } : {}) }
}

const PEM_CRL = /-----BEGIN X509 CRL-----[^-]+-----END X509 CRL-----/g

/**
 * The CRLs of a `--tls-crl` file, one PEM block each: Node's `crl` option reads only the
 * first CRL of a buffer (the revocations of a second CA would be silently missing, and its
 * devices refused for want of a CRL), so the file is split here. Each is parsed once here
 * so that a bad one is an error naming the flag, not a bare "Failed to parse CRL".
 */
export async function loadCrls (path: string): Promise<string[]> {
  let text: string
  try { text = await readFile(path, 'utf8') } catch (err) { throw new ConfigError('tlsCrl', `--tls-crl ${path}: cannot read it: ${(err as Error).message}`) }
  const blocks = text.match(PEM_CRL) ?? []
  if (blocks.length === 0) throw new ConfigError('tlsCrl', `--tls-crl ${path}: no PEM CRL in it (a block -----BEGIN X509 CRL-----; convert a DER one with openssl crl -inform DER -in FILE -out FILE.pem)`)
  blocks.forEach((crl, i) => {
    try { createSecureContext({ crl }) } catch (err) { throw new ConfigError('tlsCrl', `--tls-crl ${path}: CRL ${i + 1} of ${blocks.length} is not valid: ${(err as Error).message}`) }
  })
  return blocks
}

/**
 * What a client's TLS certificate says about it: `none` (not TLS, or no verified
 * certificate: the usual `--auth` applies), the device its verified certificate names
 * (subject CN), or `unreadable`: a verified certificate whose identity cannot be read (the
 * connection is already gone, no CN, several CNs). A hook that gets `unreadable` refuses
 * the client: it cannot decide who it is, and must not guess.
 */
export type CertIdentity =
  | { kind: 'none' }
  | { kind: 'device', cn: string }
  | { kind: 'unreadable', reason: string }

const NO_CERT: CertIdentity = { kind: 'none' }
/** The identity read at the handshake, while the socket's handle is surely there. */
const identities = new WeakMap<TLSSocket, CertIdentity>()

/**
 * Reads a TLS socket's verified client certificate. Never throws: the certificate is peer
 * input, and `getPeerCertificate()` returns null once the socket's handle is gone (when
 * `certIdentity` read it in `authenticate`, a tick after the CONNECT, and a device that reset
 * its connection in between crashed the gateway with "Cannot read properties of null").
 */
export function readCertIdentity (s: TLSSocket): CertIdentity {
  try {
    if (!s.authorized) return NO_CERT
    const cert = s.getPeerCertificate() as Partial<PeerCertificate> | null
    if (cert === null || typeof cert !== 'object') return { kind: 'unreadable', reason: 'the connection is gone' }
    const cn: unknown = cert.subject?.CN
    if (typeof cn === 'string') return { kind: 'device', cn }
    if (Array.isArray(cn)) return { kind: 'unreadable', reason: 'the certificate has several subject CNs' }
    return { kind: 'unreadable', reason: 'the certificate has no subject CN' }
  } catch (err) {
    return { kind: 'unreadable', reason: `the certificate cannot be read: ${(err as Error)?.message}` }
  }
}

/** The identity a client's TLS certificate gives it (see CertIdentity); never throws. */
export function certIdentity (client: Client): CertIdentity {
  const s = client.conn as unknown
  if (!(s instanceof TLSSocket)) return NO_CERT
  return identities.get(s) ?? readCertIdentity(s)
}

/**
 * Checks a certificate identity against the CONNECT: null if the client may connect as the
 * device `identity`, else the reason to refuse it.
 */
export function checkCertIdentity (client: Client, identity: string): string | null {
  if (!isValidDeviceId(identity)) return `certificate CN ${JSON.stringify(String(identity).slice(0, 80))} is not a valid device id`
  if (client.id !== identity) return `client id ${JSON.stringify(client.id)} differs from the certificate CN ${JSON.stringify(identity)}`
  return null
}

export class Listeners {
  private plain: Server | null = null
  private secure: TlsServer | null = null
  private readonly handshakeFailures: Counter<'reason'>
  private readonly reloads: Counter<'outcome'>
  private crlWarned = false

  private constructor (private readonly config: ListenersConfig, private readonly log: Logger, metrics: Metrics) {
    this.handshakeFailures = new Counter({ name: 'gateway_tls_handshake_failures_total', help: 'TLS handshakes on the MQTT TLS listener that failed (no or bad client certificate, revoked certificate, no usable CRL for its CA, wrong protocol, timeout)', labelNames: ['reason'], registers: [metrics.registry] })
    this.reloads = new Counter({ name: 'gateway_tls_reloads_total', help: 'TLS certificate reloads (SIGHUP) by outcome', labelNames: ['outcome'], registers: [metrics.registry] })
  }

  static async create (config: ListenersConfig, onConnection: (socket: Socket) => void, metrics: Metrics, logger: Logger): Promise<Listeners> {
    const l = new Listeners(config, logger, metrics)
    try {
      if (config.mqttPort !== null) {
        const server = createTcpServer({ noDelay: true })
        server.maxConnections = config.maxConnections
        server.on('connection', onConnection)
        l.plain = server
        await listen(server, config.mqttPort, config.host, '--mqtt-port', 'another MQTT broker such as Mosquitto, or another gateway?')
      }
      if (config.tls) {
        const t = config.tls
        const server = createTlsServer({
          ...await loadContext(t),
          requestCert: t.caPath !== undefined,
          rejectUnauthorized: t.requireClientCert,
          handshakeTimeout: config.connectTimeoutMs,
          noDelay: true
        })
        server.maxConnections = config.maxConnections
        server.on('secureConnection', (socket: TLSSocket) => {
          identities.set(socket, readCertIdentity(socket))
          onConnection(socket)
        })
        server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket | undefined) => {
          // a certificate that fails verification: Node destroys the socket and keeps the cause only in authorizationError
          const certError = (socket as { authorizationError?: unknown } | undefined)?.authorizationError
          const reason = tlsFailureReason(err, typeof certError === 'string' ? certError : undefined)
          l.handshakeFailures.inc({ reason })
          if (reason === 'crl_unusable' && !l.crlWarned) {
            l.crlWarned = true // every device of that CA is refused until the CRL is fixed: say so once per reload
            l.log.warn({ certError, crl: config.tls?.crlPath }, 'a client certificate was refused because --tls-crl has no valid CRL for its CA (missing, expired or not yet valid)')
          }
          l.log.debug({ remote: socket?.remoteAddress, reason, certError, err }, 'TLS handshake failed')
          socket?.destroy()
        })
        l.secure = server
        await listen(server, t.port, config.host, '--tls-port', 'another MQTT broker, or another gateway?')
      }
    } catch (err) {
      await l.close()
      throw err
    }
    return l
  }

  get plainPort (): number | null { return this.plain ? (this.plain.address() as AddressInfo).port : null }
  get tlsPort (): number | null { return this.secure ? (this.secure.address() as AddressInfo).port : null }
  /** Every configured listener is accepting connections. */
  get listening (): boolean { return (this.plain?.listening ?? true) && (this.secure?.listening ?? true) }

  /** Re-reads the TLS files for new handshakes (SIGHUP); keeps the old ones if that fails. */
  async reloadTls (): Promise<boolean> {
    const c = this.config.tls
    if (!c || !this.secure) return false
    try {
      this.secure.setSecureContext(await loadContext(c))
    } catch (err) {
      this.reloads.inc({ outcome: 'failed' })
      this.log.error({ err, cert: c.certPath }, 'TLS reload failed; the previous certificate stays in use')
      return false
    }
    this.reloads.inc({ outcome: 'ok' })
    this.crlWarned = false
    this.log.info({ cert: c.certPath, ca: c.caPath, crl: c.crlPath }, 'TLS certificate reloaded')
    return true
  }

  stopAccepting (): void {
    if (this.plain?.listening) this.plain.close()
    if (this.secure?.listening) this.secure.close()
  }

  /** Closes the listening sockets (the broker destroys the client sockets). */
  async close (): Promise<void> {
    this.stopAccepting()
  }
}

function tlsFailureReason (err: NodeJS.ErrnoException | undefined, certError: string | undefined): string {
  if (certError !== undefined) {
    if (certError === 'CERT_REVOKED') return 'revoked_certificate'
    if (/CRL/.test(certError)) return 'crl_unusable'
    return 'bad_certificate'
  }
  const m = `${err?.code ?? ''} ${err?.message ?? ''}`
  if (/timed out|ETIMEDOUT|ECONNRESET/i.test(m)) return 'timeout_or_reset'
  if (/PEER_DID_NOT_RETURN_A_CERTIFICATE|certificate required/i.test(m)) return 'no_client_cert'
  if (/certificate|CERT|unknown ca|expired/i.test(m)) return 'bad_certificate'
  return 'protocol'
}
