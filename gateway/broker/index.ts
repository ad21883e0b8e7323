/**
 * The embedded MQTT broker: Aedes 1.x (MQTT 3.1.1 and 3.1) on TCP, with
 * - TCP_NODELAY on every client socket (PUBACKs are tiny: Nagle plus delayed ACK would
 *   hold them ~5 ms under load),
 * - the packet size guard (guard.ts),
 * - [MQTT-3.1.3-8] a zero-byte client id with CleanSession=0 refused with CONNACK 0x02
 *   (Aedes 1.2 accepts it),
 * - auth (`none` | `file`) and the ACL of DESIGN.md sections 4 and 9: `devices/{id}/readings`
 *   only by client id `{id}` (anything else closes the connection), `devices/+/receipts`
 *   only by the gateway itself, other topics as in a plain broker (`--auth file`: devices
 *   may publish only their readings and subscribe only to their receipts; apps may
 *   subscribe to anything),
 * - readings handed to the intake from `authorizePublish`, the only hook before the PUBACK.
 */
import { createServer, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'
import { Aedes, type AuthenticateError, type Client } from 'aedes'
import type { Logger } from 'pino'
import { isValidDeviceId, parseDeviceTopic } from '../../protocol/index.ts'
import type { Metrics } from '../admin/metrics.ts'
import type { Intake } from '../intake/index.ts'
import type { Principal } from './auth.ts'
import type { BrokerConfig } from './config.ts'
import { installPacketGuard } from './guard.ts'

export type { BrokerConfig } from './config.ts'

const PRINCIPAL = Symbol('principal')
const EMPTY_PERSISTENT_ID = Symbol('emptyPersistentId')
type Tagged = Client & { [PRINCIPAL]?: Principal, [EMPTY_PERSISTENT_ID]?: boolean }

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
        if (!config.auth) { cb(null, true); return }
        config.auth.authenticate(client.id, username, password).then((p) => {
          if (!p) { log.warn({ clientId: client.id, username }, 'authentication failed'); cb(authError('bad user name or password', 4), null); return }
          c[PRINCIPAL] = p
          cb(null, true)
        }, (err: Error) => cb(authError(err.message, 3), null))
      },
      authorizePublish (client, packet, cb) {
        if (!client) { cb(null); return } // the gateway's own publishes (receipts)
        const t = parseDeviceTopic(packet.topic)
        const role = (client as Tagged)[PRINCIPAL]?.role
        if (t === null) {
          if (role === 'device') { cb(new Error('devices may publish only to their readings topic')); return }
          cb(null)
          return
        }
        if (t.kind === 'readings') {
          if (t.deviceId !== client.id || !isValidDeviceId(t.deviceId) || role === 'app') {
            metrics.intake.inc({ outcome: 'acl_denied' })
            log.warn({ clientId: client.id, topic: packet.topic }, 'publish to another device\'s readings refused; closing the connection')
            cb(new Error(`client ${client.id} may not publish to ${packet.topic}`))
            return
          }
          intake.handle(client, t.deviceId, packet, cb)
          return
        }
        if (t.kind === 'receipts') {
          log.warn({ clientId: client.id, topic: packet.topic }, 'publish to a receipts topic refused; closing the connection')
          cb(new Error('only the gateway publishes receipts'))
          return
        }
        cb(role === 'device' ? new Error('devices may publish only to their readings topic') : null)
      },
      authorizeSubscribe (client, sub, cb) {
        const p = (client as Tagged)[PRINCIPAL]
        if (p?.role === 'device' && sub.topic !== `devices/${p.name}/receipts`) {
          log.warn({ clientId: client.id, topic: sub.topic }, 'subscription refused')
          cb(null, null) // SUBACK 0x80 for this topic, connection stays
          return
        }
        cb(null, sub)
      }
    })
    aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err }, 'client error'))
    aedes.on('connectionError', (client, err) => log.debug({ clientId: client.id, err }, 'connection error'))

    const server = createServer({ noDelay: true })
    server.maxConnections = config.maxConnections
    const broker = new Broker(aedes, server, log)
    server.on('connection', (socket) => {
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
