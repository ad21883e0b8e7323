/**
 * Broker configuration: the gateway flags the embedded MQTT broker reads (the gateway's
 * schema spreads this one). `auth`/`authFile` select authentication; the broker itself
 * receives the parsed credentials.
 */
import type { ConfigOf } from '../../protocol/index.ts'
import type { AuthFile } from './auth.ts'

export const brokerSchema = {
  host: { type: 'string', default: '0.0.0.0', doc: 'Address the MQTT listener binds' },
  mqttPort: { type: 'int', default: 1883, min: 0, max: 65535, doc: 'MQTT TCP port (0 = pick a free port)' },
  auth: { type: 'enum', values: ['none', 'file'] as const, default: 'none', doc: 'MQTT authentication' },
  authFile: { type: 'string', doc: 'JSON file of device/app credentials (with --auth file)' },
  maxPacketBytes: { type: 'int', default: 64 * 1024, min: 256, max: 256 * 1024 * 1024, doc: 'Largest MQTT packet; larger ones close the connection before they are buffered' },
  maxConnections: { type: 'int', default: 20000, min: 1, doc: 'MQTT connections accepted at once' },
  connectTimeoutMs: { type: 'int', default: 10000, min: 100, doc: 'A connection that sends no CONNECT within this is closed' },
  drainTimeoutMs: { type: 'int', default: 5000, min: 100, doc: 'A client whose socket stays unwritable this long (it does not read) is disconnected; until then it holds up deliveries' }
} as const

/** The broker's flags, with `auth` replaced by the credentials read from `authFile` (null: none). */
export type BrokerConfig = Omit<ConfigOf<typeof brokerSchema>, 'auth' | 'authFile'> & { auth: AuthFile | null }
