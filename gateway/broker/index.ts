/**
 * The embedded MQTT broker: Aedes 1.x (MQTT 3.1.1 and 3.1) on TCP and TLS (listeners.ts), with
 * - TCP_NODELAY on every client socket (PUBACKs are tiny: Nagle plus delayed ACK would
 *   hold them ~5 ms under load),
 * - the packet size guard (guard.ts),
 * - [MQTT-3.1.3-8] a zero-byte client id with CleanSession=0 refused with CONNACK 0x02
 *   (Aedes 1.2 accepts it),
 * - a verified TLS client certificate authenticating the device named by its CN,
 * - auth (`none` | `file`), the topic rules and login limits of security.ts (acl.ts,
 *   login-guard.ts; docs/security.md): `devices/{id}/readings` only by client id `{id}`,
 *   no `$`-topic publishes, wildcards and `$SYS` for apps and local clients (anything
 *   refused on publish closes the connection; on subscribe, SUBACK 0x80),
 * - a persistent session owned by the principal that made it: another principal with that
 *   client id starts clean (security.ts, persistence.ts),
 * - readings handed to the intake from `authorizePublish`, the only hook before the PUBACK,
 *   and routed to subscribers only when one could match (reading-routes.ts),
 * - every hook and the connection callback under a try/catch (hook-guard.ts):
 *   nothing a peer sends throws out of one; a hook that cannot decide closes that client.
 */
import type { Socket } from 'node:net'
// before Aedes: mqtt-packet creates its debug functions when it loads
import './quiet-debug.ts'
import { Aedes, type AuthenticateError, type Client } from 'aedes'
import type { Logger } from 'pino'
import type { Metrics } from '../metrics/index.ts'
import type { Intake } from '../intake/index.ts'
import type { BrokerConfig } from './config.ts'
import { installPacketGuard } from './guard.ts'
import { HookGuard } from './hook-guard.ts'
import { Limits } from './limits.ts'
import { certIdentity, checkCertIdentity, Listeners } from './listeners.ts'
import { principalKey } from './acl.ts'
import { Security } from './security.ts'
import { isLoopback } from '../../protocol/loopback.ts'
import { Unmapped, type UnstoredStatus } from './unmapped.ts'
import { ReadingRoutes } from './reading-routes.ts'
import { commandInternals, installReadGate, type CommandInternals } from './aedes-internals.ts'
import { commandsTopic } from '../../protocol/commands.ts'

export type { BrokerConfig } from './config.ts'

/** What the broker tells the commands core (gateway/commands/index.ts); `session` is the client object of that connection. */
export type CommandHooks = {
  connected (id: string, session: Client): void
  disconnected (id: string, session: Client): void
  subscribed (id: string, session: Client): void
  acked (id: string, session: Client, payload: Buffer): void
  /** `done`: call once the answer is durable (its PUBACK then goes out in publish order) */
  answer (session: Client, id: string, payload: Buffer, done: (err: Error | null) => void): void
}

const EMPTY_PERSISTENT_ID = Symbol('emptyPersistentId')
type Tagged = Client & { [EMPTY_PERSISTENT_ID]?: boolean }

function authError (message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError
}

export class Broker {
  private closed = false
  commandHooks: CommandHooks | null = null
  private commandDoor!: CommandInternals
  private readonly sockets = new Set<Socket>()
  listeners!: Listeners

  private constructor (readonly aedes: Aedes, private readonly log: Logger, readonly limits: Limits, readonly routes: ReadingRoutes, private readonly unmapped: Unmapped) {}

  /** The plain MQTT port; throws when that listener is off (`--no-mqtt`). */
  get port (): number {
    const p = this.listeners.plainPort
    if (p === null) throw new Error('the plain MQTT listener is off (--no-mqtt)')
    return p
  }

  get tlsPort (): number | null { return this.listeners.tlsPort }
  get listening (): boolean { return this.listeners.listening }
  get connected (): number { return this.aedes.connectedClients }
  /** Publishes on topics that store nothing, by topic (unmapped.ts). */
  unstored (): UnstoredStatus { return this.unmapped.status() }

  static async create (config: BrokerConfig, intake: Intake, metrics: Metrics, logger: Logger): Promise<Broker> {
    const log = logger.child({ component: 'broker' })
    const limits = new Limits(config.limits, metrics, logger) // bounds on what one client can make the broker hold, checked before the hooks below
    const security = new Security(config.security, config.auth, () => aedes, metrics, log, limits.persistence)
    const unmapped = new Unmapped(metrics.registry, log, config.unmatchedTopics)
    const hooks = new HookGuard(metrics.registry, log)
    // guarded twice: the limits may run our hooks later (a slowed publish), outside the outer try
    const aedes = await Aedes.createBroker(hooks.wrap(limits.wrap(hooks.wrap({
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
        const cert = certIdentity(client) // a verified client certificate: its CN is the device (listeners.ts)
        if (cert.kind === 'unreadable') {
          // not an identity we can check, so not one to accept
          log[client.closed ? 'debug' : 'warn']({ clientId: client.id, reason: cert.reason }, 'client certificate unreadable; refusing the client')
          cb(authError(`client certificate: ${cert.reason}`, 5), null)
          return
        }
        const certId = cert.kind === 'device' ? cert.cn : undefined
        if (certId !== undefined) {
          const refused = checkCertIdentity(client, certId)
          if (refused) { log.warn({ clientId: client.id, certId }, 'client certificate does not match the client id'); cb(authError(refused, 5), null); return }
        }
        security.authenticate(client, username, password, certId).then((v) => {
          if (v.ok) cb(null, true); else cb(authError(v.message, v.returnCode), null)
        }, (err: Error) => cb(authError(err.message, 3), null))
          .catch((err: unknown) => hooks.fail('authenticate', client, err)) // a throw from Aedes' callback: not an unhandled rejection
      },
      authorizePublish (client, packet, cb) {
        if (!client) { cb(null); return } // the gateway's own publishes (receipts)
        const v = security.authorizePublish(client, packet.topic)
        if (v.kind === 'readings') { ReadingRoutes.mark(packet); intake.handle(client, v.deviceId, packet, cb); return }
        // a device's answer to a command: stored before its PUBACK (gateway/commands/)
        if (v.kind === 'answer' && broker.commandHooks) { broker.commandHooks.answer(client, v.deviceId, packet.payload as Buffer, intake.slot(client, cb)); return }
        // topic mappings (gateway/mapping/): readings from devices that publish in their own shapes
        if (!packet.topic.startsWith('$') && config.mapper?.handle(client, packet, cb, security.principal(client))) return
        if (v.kind === 'deny') { cb(v.error); return }
        // never stored: warned once per client and topic, counted; PUBACKed and routed, or with
        // --unmatched-topics refuse the connection closed (an app's own topics stay routed)
        if (unmapped.note(client.id, packet.topic, security.principal(client)?.role !== 'app') === 'refuse') { cb(new Error(`topic ${packet.topic} stores nothing (the readings topic is devices/${client.id}/readings) and --unmatched-topics is refuse`)); return }
        cb(null)
      },
      authorizeSubscribe (client, sub, cb) {
        cb(null, security.allowSubscribe(client, sub.topic) ? sub : null) // null: SUBACK 0x80 for this filter
      }
    }))))
    limits.install(aedes)
    const routes = new ReadingRoutes()
    routes.install(aedes, limits.persistence) // readings nobody subscribed to skip Aedes' routing
    // after limits.install's session tracking: the registered client owns its persistent session (persistence.ts)
    aedes.on('client', (c) => {
      security.registered(c)
      const p = c.clean ? undefined : security.principal(c)
      if (p) limits.persistence.setSessionOwner(c.id, principalKey(p))
    })
    aedes.on('clientError', (client, err) => log.debug({ clientId: client.id, err }, 'client error'))
    aedes.on('connectionError', (client, err) => log.debug({ clientId: client.id, err }, 'connection error'))

    const broker: Broker = new Broker(aedes, log, limits, routes, unmapped)
    broker.commandDoor = commandInternals(aedes)
    const onConnection = (socket: Socket): void => {
      try {
        accept(socket)
      } catch (err) { // a socket that went away as it arrived must not take the gateway with it
        hooks.fail('connection', null, err)
        socket.destroy()
      }
    }
    const accept = (socket: Socket): void => {
      if (!security.admitConnection(socket)) { socket.destroy(); return }
      socket.setNoDelay(true)
      broker.sockets.add(socket)
      socket.once('close', () => broker.sockets.delete(socket))
      const client = aedes.handle(socket)
      installReadGate(client) // before any packet is parsed: the intake may hold reads under overload
      limits.attach(client)
      installPacketGuard(client, config.maxPacketBytes, (reason) => {
        metrics.oversize.inc()
        log.warn({ clientId: client.id, remote: socket.remoteAddress, reason }, 'oversize or malformed packet; closing the connection')
        socket.destroy()
      })
    }
    try {
      broker.listeners = await Listeners.create(config, onConnection, metrics, log)
    } catch (err) {
      await new Promise<void>((resolve) => aedes.close(() => resolve()))
      throw err
    }
    if (!config.auth && config.mqttPort !== null && !isLoopback(config.host)) log.warn({ host: config.host }, 'anonymous clients allowed on a non-loopback address (--allow-anonymous): anyone who reaches the port may publish as any device')
    return broker
  }

  /**
   * Commands to devices (gateway/commands/): `hooks` gets the devices' sessions, their
   * subscriptions to their own commands topic, the PUBACKs of commands and their answers.
   */
  attachCommands (hooks: CommandHooks): void {
    this.commandHooks = hooks
    const a = this.aedes
    a.on('clientReady', (c) => hooks.connected(c.id, c))
    a.on('clientDisconnect', (c) => {
      hooks.disconnected(c.id, c)
      // a persistent session's unacknowledged commands: not resent by Aedes at the next
      // connect (maybe past their expiry or a recall); the commands core sends what is due
      if (c.clean === false) this.commandDoor.forgetQueued(c.id, commandsTopic(c.id)).catch((err: unknown) => this.log.warn({ clientId: c.id, err }, 'could not drop the queued commands of a gone session'))
    })
    a.on('subscribe', (subs, c) => { if (c && subs.some((s) => s.topic === commandsTopic(c.id))) hooks.subscribed(c.id, c) })
    a.on('ack', (packet, c) => {
      const p = packet as { topic?: string, payload?: Buffer } | undefined
      if (c && p?.topic === commandsTopic(c.id) && p.payload) hooks.acked(c.id, c, p.payload)
    })
  }

  /** The session of device `id` when it is connected and subscribed to its commands topic at QoS 1. */
  commandSession (id: string): Client | null {
    const c = this.commandDoor.client(id)
    if (!c || c.closed || !c.connected) return null
    return (this.commandDoor.subscribedQoS(c, commandsTopic(id)) ?? 0) >= 1 ? c : null
  }

  /** Writes a command into `client`'s session alone, at QoS 1. */
  deliverCommand (client: Client, payload: Buffer): void {
    this.commandDoor.deliver(client, commandsTopic(client.id), payload, () => {})
  }

  publish (topic: string, payload: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.aedes.publish({ cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false }, (err?: Error) => err ? reject(err) : resolve())
    })
  }

  /** Stops accepting connections (existing clients stay until `close`). */
  stopAccepting (): void {
    this.listeners.stopAccepting()
  }

  /** Re-reads the TLS certificate files (SIGHUP); see listeners.ts. */
  reloadTls (): Promise<boolean> {
    return this.listeners.reloadTls()
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.listeners.close()
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()))
    this.limits.close()
    for (const s of this.sockets) s.destroy()
    this.log.info('broker closed')
  }
}
