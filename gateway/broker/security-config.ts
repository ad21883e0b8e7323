/**
 * Configuration of the broker's security: secure defaults (Mosquitto 2.x local-only mode),
 * topic rules for anonymous clients, and login hardening. The fields are spread into the
 * gateway schema (gateway/config.ts); docs/security.md has the table of flags, defaults and
 * metrics.
 */
import { isIP } from 'node:net'
import { ConfigError } from '../../protocol/index.ts'
import { isLoopback } from '../../protocol/loopback.ts'

export const securitySchema = {
  allowAnonymous: { type: 'bool', default: false, doc: 'Allow --auth none on a non-loopback --host (anyone who reaches the port may publish as any device)' },
  wildcardSubscribe: { type: 'enum', values: ['local', 'apps', 'all'] as const, default: 'local', doc: 'Who may subscribe to wildcard filters (+ #), $SYS and other devices\' topics: local = apps, and with --auth none clients from --local-networks; apps = apps only; all = any client but a device' },
  localNetworks: { type: 'list', default: ['127.0.0.0/8', '::1/128'], doc: 'Client addresses (CIDR) treated as local: exempt from --max-connect-rate, and with --auth none trusted like apps for subscriptions' },
  authMaxConcurrent: { type: 'int', default: 2, min: 1, max: 64, doc: 'Password checks (scrypt) running at once; the rest wait, so a login storm cannot starve the store of libuv threads' },
  authMaxQueued: { type: 'int', default: 128, min: 0, max: 100000, doc: 'Password checks waiting for a slot; beyond it CONNECT is refused with CONNACK 3 (server unavailable)' },
  loginFreeFailures: { type: 'int', default: 5, min: 0, max: 1_000_000, doc: 'Failed logins from one address before back-off starts' },
  loginBackoffBaseMs: { type: 'int', default: 1000, min: 0, max: 3_600_000, doc: 'First back-off after --login-free-failures failed logins; doubles with each further failure (0 = no back-off)' },
  loginBackoffMaxMs: { type: 'int', default: 300_000, min: 0, max: 86_400_000, doc: 'Longest back-off; while it runs, CONNECTs from that address get CONNACK 5' },
  loginForgetMs: { type: 'int', default: 900_000, min: 1000, max: 86_400_000, doc: 'An address\'s failed logins are forgotten after this long without a new one' },
  maxTrackedAddresses: { type: 'int', default: 10_000, min: 16, max: 10_000_000, doc: 'Source addresses remembered for login back-off and for connection rates (each table; least recently seen forgotten first)' },
  maxConnectRate: { type: 'number', default: 50, min: 0, max: 1_000_000, doc: 'New connections per second per source address (IPv6: per /64), local networks exempt; beyond it the socket is closed (0 = off)' },
  connectBurst: { type: 'int', default: 200, min: 1, max: 10_000_000, doc: 'Connections one source address may open at once before --max-connect-rate applies' }
} as const

type Exposure = { auth: 'none' | 'file', mqtt: boolean, tlsRequireClientCert: boolean }

/** Every client authenticates: a password file, or only the TLS listener with client certificates required. */
function authenticated (c: Exposure): boolean {
  return c.auth === 'file' || (!c.mqtt && c.tlsRequireClientCert)
}

/** The MQTT listeners' address when `--host` is not given: loopback unless clients must authenticate. */
export function defaultHost (c: Exposure): string {
  return authenticated(c) ? '0.0.0.0' : '127.0.0.1'
}

/**
 * Secure defaults: `--auth none` on an address others can reach is a startup error unless
 * `--allow-anonymous` says so (Mosquitto 2.x refuses anonymous clients on non-local
 * listeners in the same way). One line, naming the flags and how to create credentials.
 */
export function checkAnonymousExposure (c: Exposure & { host: string, allowAnonymous: boolean }): void {
  if (authenticated(c) || c.allowAnonymous || isLoopback(c.host)) return
  throw new ConfigError('host', `--auth none on --host ${c.host} lets anyone who reaches the port publish as any device; ` +
    'create credentials with `gateway passwd FILE add-device ID` and run with --auth file --auth-file FILE, ' +
    'or bind --host 127.0.0.1, or pass --allow-anonymous to accept the risk')
}

export function checkLocalNetworks (list: readonly string[]): void {
  for (const cidr of list) {
    const [addr, bits] = cidr.split('/')
    const fam = isIP(addr ?? '')
    const n = bits === undefined ? (fam === 6 ? 128 : 32) : Number(bits)
    if (fam === 0 || !Number.isInteger(n) || n < 0 || n > (fam === 6 ? 128 : 32)) {
      throw new ConfigError('localNetworks', `${JSON.stringify(cidr)} is not an address or CIDR (e.g. 127.0.0.0/8, ::1/128, 192.168.1.0/24)`)
    }
  }
}
