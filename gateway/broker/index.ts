/**
 * The embedded MQTT broker: Aedes 1.x (MQTT 3.1.1 and 3.1) on TCP, with
 * - TCP_NODELAY on every client socket (PUBACKs are tiny: Nagle plus delayed ACK would
 *   hold them ~5 ms under load),
 * - the packet size guard (guard.ts),
 * - [MQTT-3.1.3-8] a zero-byte client id with CleanSession=0 refused with CONNACK 0x02
 *   (Aedes 1.2 accepts it),
 * - auth (`none` | `file`), the topic rules and login limits of security.ts (acl.ts,
 *   login-guard.ts; docs/security.md): `devices/{id}/readings` only by client id `{id}`,
 *   no `$`-topic publishes, wildcards and `$SYS` for apps and local clients (anything
 *   refused on publish closes the connection; on subscribe, SUBACK 0x80),
 * - readings handed to the intake from `authorizePublish`, the only hook before the PUBACK.
 */
import { createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Aedes, type AuthenticateError, type Client } from 'aedes'
import type { Logger } from 'pino'
import type { Metrics } from '../admin/metrics.ts'
import type { Intake } from '../intake/index.ts'
import type { AuthFile } from './auth.ts'
import { installPacketGuard } from './guard.ts'
import { Security, type SecurityConfig } from './security.ts'
import { isLoopbackHost } from './security-config.ts'

export type BrokerConfig = {
  host: string
  mqttPort: number
  maxPacketBytes: number
  maxConnections: number
  connectTimeoutMs: number
  drainTimeoutMs: number
  auth: AuthFile | null
  security: SecurityConfig
}

const EMPTY_PERSISTENT_ID = Symbol('emptyPersistentId')
type Tagged = Client & { [EMPTY_PERSISTENT_ID]?: boolean }

function authError (message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError
}

export class Broker {
  private closed = false
  private readonly sockets = new Set<Socket>()

  private constructor (readonly aedes: Aedes, readonly server: Server, private readonly log: Logger) {}

  get port (): number { return (this.server.address() as AddressInfo).port }
  get connected (): number { return this.aedes.connectedClients }

  static async create (config: BrokerConfig, intake: Intake, metrics: Metrics, logger: Logger): Promise<Broker> {
    const log = logger.child({ component: 'broker' })
    const security = new Security(config.security, config.auth, () => aedes, metrics, log)
    const aedes = await Aedes.createBroker({
      id: 'gateway',
      connectTimeout: config.connectTimeoutMs,
      // a client that does not read stalls Aedes' deliveries (and so every publisher) until this
      drainTimeout: config.drainTimeoutMs,
      maxClientsIdLength: 64,
      preConnect (client, packet, cb) {
        // [MQTT-3.1.3-8]: refused in authenticate, which can answer with CONNACK 0x02
        if (packet.clientId === '' && packet.clean === false) (client as Tagged)[EMPTY_PERSISTENT_ID] = true
        cb(null, true)
      },
      authenticate (client, username, password, cb) {
        const c = client as Tagged
        if (c[EMPTY_PERSISTENT_ID]) { cb(authError('a zero-byte client id requires CleanSession=1 [MQTT-3.1.3-8]', 2), null); return }
        security.authenticate(client, username, password).then((v) => {
          if (v.ok) cb(null, true); else cb(authError(v.message, v.returnCode), null)
        }, (err: Error) => cb(authError(err.message, 3), null))
      },
      authorizePublish (client, packet, cb) {
        if (!client) { cb(null); return } // the gateway's own publishes (receipts)
        const v = security.authorizePublish(client, packet.topic)
        if (v.kind === 'deny') cb(v.error)
        else if (v.kind === 'readings') intake.handle(client, v.deviceId, packet, cb)
        else cb(null)
      },
      authorizeSubscribe (client, sub, cb) {
        cb(null, security.allowSubscribe(client, sub.topic) ? sub : null) // null: SUBACK 0x80 for this filter
      }
    })
    aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'client error'))
    aedes.on('connectionError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'connection error'))

    const server = createServer({ noDelay: true })
    server.maxConnections = config.maxConnections
    const broker = new Broker(aedes, server, log)
    server.on('connection', (socket) => {
      if (!security.admitConnection(socket)) { socket.destroy(); return }
      socket.setNoDelay(true)
      broker.sockets.add(socket)
      socket.once('close', () => broker.sockets.delete(socket))
      const client = aedes.handle(socket)
      installPacketGuard(client, config.maxPacketBytes, (reason) => {
        metrics.oversize.inc()
        log.warn({ clientId: client.id, remote: socket.remoteAddress, reason }, 'oversize or malformed packet; closing the connection')
        socket.destroy()
      })
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(config.mqttPort, config.host, () => { server.off('error', reject); resolve() })
    })
    if (!config.auth && !isLoopbackHost(config.host)) log.warn({ host: config.host }, 'anonymous clients allowed on a non-loopback address (--allow-anonymous): anyone who reaches the port may publish as any device')
    return broker
  }

  publish (topic: string, payload: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.aedes.publish({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false }, (err?: Error) => err ? reject(err) : resolve())
    })
  }

  /** Stops accepting connections (existing clients stay until `close`). */
  stopAccepting (): void {
    this.server.close()
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.server.close()
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()))
    for (const s of this.sockets) s.destroy()
    this.log.info('broker closed')
  }
}
