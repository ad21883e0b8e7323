/**
 * Broker configuration: the gateway flags the embedded MQTT broker reads (the gateway's
 * schema spreads this one). `auth`/`authFile` select authentication; the broker itself
 * receives the parsed credentials.
 */
import type { ConfigOf } from '../../common/index.ts'
import type { AuthFile } from './auth.ts'
import type { TlsListenerConfig } from './listeners.ts'
import type { BrokerLimits } from './limits-config.ts'
import type { SecurityConfig } from './security.ts'
import type { Mapper } from '../mapping/index.ts'

export const brokerSchema = {
  host: { type: 'string', default: '', doc: 'Address the MQTT listeners bind (default: 127.0.0.1 with --auth none, 0.0.0.0 with --auth file or TLS client certificates only)' },
  mqttPort: { type: 'int', default: 1883, min: 0, max: 65535, doc: 'MQTT TCP port (0 = pick a free port)' },
  mqtt: { type: 'bool', default: true, doc: 'Plain MQTT listener on --mqtt-port; --no-mqtt turns it off (TLS only)' },
  tlsPort: { type: 'int', min: 0, max: 65535, doc: 'MQTT over TLS port (default 8883 when --tls-cert is set; 0 = pick a free port)' },
  tlsCert: { type: 'string', doc: 'PEM certificate (chain) of the MQTT TLS listener; reloaded on SIGHUP' },
  tlsKey: { type: 'string', doc: 'PEM private key of --tls-cert' },
  tlsCa: { type: 'string', doc: 'PEM CA that signs device certificates: clients may present one (CN = device id)' },
  tlsCrl: { type: 'string', doc: 'PEM certificate revocation list(s) of --tls-ca (one file, several CRLs allowed, one for each CA): a revoked device certificate fails the handshake; reloaded on SIGHUP' },
  tlsRequireClientCert: { type: 'bool', default: false, doc: 'TLS clients must present a certificate signed by --tls-ca; its CN is the device id and must equal the client id' },
  auth: { type: 'enum', values: ['none', 'file'] as const, default: 'none', doc: 'MQTT authentication: none (anyone; loopback only unless --allow-anonymous) or file (scrypt credentials in --auth-file)' },
  authFile: { type: 'string', doc: 'JSON file of device/app credentials (with --auth file)' },
  maxPacketBytes: { type: 'int', default: 64 * 1024, min: 256, max: 256 * 1024 * 1024, doc: 'Largest MQTT packet; larger ones close the connection before they are buffered' },
  maxConnections: { type: 'int', default: 20000, min: 1, doc: 'MQTT connections accepted at once' },
  connectTimeoutMs: { type: 'int', default: 10000, min: 100, doc: 'A connection that sends no CONNECT within this is closed' },
  unmatchedTopics: { type: 'enum', values: ['accept', 'refuse'] as const, default: 'accept', doc: 'A device\'s publish on a topic that stores nothing (neither devices/{id}/readings nor a topic mapping): accept (PUBACK, routed to subscribers as a plain broker, warned once per client and topic, counted) or refuse (the connection is closed without a PUBACK, as for another device\'s readings topic); apps\' publishes are always routed' },
  drainTimeoutMs: { type: 'int', default: 5000, min: 100, doc: 'A client whose socket stays unwritable this long (it does not read) is disconnected; until then it holds up deliveries' }
} as const

type FileOnly = 'auth' | 'authFile' | 'mqtt' | 'mqttPort' | 'tlsPort' | 'tlsCert' | 'tlsKey' | 'tlsCa' | 'tlsCrl' | 'tlsRequireClientCert'

/**
 * The broker's flags as the broker takes them: `auth` is the credentials read from
 * `authFile` (null: none), `mqttPort` null with `--no-mqtt`, `tls` the TLS listener with its
 * certificates read (listeners.ts), or null.
 */
export type BrokerConfig = Omit<ConfigOf<typeof brokerSchema>, FileOnly> & { auth: AuthFile | null, mqttPort: number | null, tls: TlsListenerConfig | null, security: SecurityConfig, limits: BrokerLimits, mapper?: Mapper | null }
