/**
 * The broker's security hooks, one object the broker (index.ts) calls from Aedes' hooks:
 *
 *   admitConnection(socket)   raw socket, before Aedes: per-address connection rate
 *   authenticate(client, ..)  CONNECT: will topic, back-off ban, credentials (bounded scrypt),
 *                             device ids reserved for devices, session takeover
 *   authorizePublish(..)      topic rules (acl.ts) -> allow | readings | deny
 *   allowSubscribe(..)        topic rules (acl.ts), SUBACK 0x80 when refused
 *
 * Every refusal is counted in /metrics and logged once per offender (per source address for
 * connection-level refusals, per client for publish and subscribe refusals).
 *
 * Session takeover [MQTT-3.1.4-2]: a new CONNECT with the client id of a connected client
 * closes the old one. That is allowed only to the same principal: with `--auth file` the same
 * device or app (a device's client id is its user name); with `--auth none`, nobody
 * authenticates, so only a client from the same source address (a device reconnecting over a
 * half-open connection). On loopback every client shares an address: there the loopback-only
 * listener is the protection.
 *
 * Session ownership, so no client takes over another principal's session: a persistent
 * session (CleanSession=0) belongs to the principal that made it (`principalKey`: the
 * device, the app, or with `--auth none` anyone
 * anonymous with that client id). A CONNECT by another principal with that client id starts
 * clean: the old session, with its subscriptions and queued messages, is removed first
 * (`SessionClaims.claimSession`), logged and counted in `gateway_mqtt_sessions_wiped_total`.
 */
import type { Socket } from 'node:net'
import type { Aedes, Client } from 'aedes'
import { Counter, Gauge } from 'prom-client'
import type { Logger } from 'pino'
import type { Metrics } from '../metrics/index.ts'
import { ownReadings, principalKey, publishVerdict, subscribeDenial, PUBLISH_DENIALS, SUBSCRIBE_DENIALS, type OwnReadings, type Principal, type PublishDenial, type WildcardPolicy, type Who } from './acl.ts'
import { AddressTable, addressKey, FailureBackoff, NetworkList, plainAddress } from '../../common/addresses.ts'
import type { AuthFile } from './auth.ts'
import { ConnectRate, Gate, GateFullError } from './login-guard.ts'

export type SecurityConfig = {
  wildcardSubscribe: WildcardPolicy
  localNetworks: readonly string[]
  authMaxConcurrent: number
  authMaxQueued: number
  loginFreeFailures: number
  loginBackoffBaseMs: number
  loginBackoffMaxMs: number
  loginForgetMs: number
  maxTrackedAddresses: number
  maxConnectRate: number
  connectBurst: number
}

export const CONNECT_REFUSALS = ['rate', 'banned', 'bad_credentials', 'busy', 'device_id', 'takeover', 'will_topic'] as const
export type ConnectRefusal = (typeof CONNECT_REFUSALS)[number]

/** The persistent sessions' owners (persistence.ts BoundedPersistence). */
export type SessionClaims = { claimSession (id: string, owner: string, clean: boolean): Promise<string | null> }

export type AuthVerdict = { ok: true } | { ok: false, returnCode: 2 | 3 | 4 | 5, message: string }

type ClientState = Who & { key: string, address: string, logged: boolean, own: OwnReadings | null }

const remote = (client: Client): string | undefined => (client.conn as Partial<Socket>).remoteAddress

export class Security {
  private readonly state = new WeakMap<Client, ClientState>()
  /** Clients past authenticate that Aedes has not registered yet, by client id (at most one a socket, removed on register or close). */
  private readonly connecting = new Map<string, Client>()
  private readonly local: NetworkList
  readonly gate: Gate
  private readonly backoff: FailureBackoff
  private readonly rate: ConnectRate
  private readonly refused: Counter<'reason'>
  private readonly loginFailures: Counter
  private readonly aclDenied: Counter<'action' | 'rule'>
  private readonly sessionsWiped: Counter
  /** (reason, address) pairs already logged: one warning per offender, bounded like the other tables. */
  private readonly logged: AddressTable<true>

  constructor (private readonly c: SecurityConfig, private readonly auth: AuthFile | null, private readonly aedes: () => Aedes, private readonly metrics: Metrics, private readonly log: Logger, private readonly sessions: SessionClaims | null = null) {
    this.local = new NetworkList(c.localNetworks)
    this.gate = new Gate(c.authMaxConcurrent, c.authMaxQueued)
    this.backoff = new FailureBackoff({ freeFailures: c.loginFreeFailures, baseMs: c.loginBackoffBaseMs, maxMs: c.loginBackoffMaxMs, forgetMs: c.loginForgetMs, maxAddresses: c.maxTrackedAddresses })
    this.rate = new ConnectRate(c.maxConnectRate, c.connectBurst, c.maxTrackedAddresses)
    this.logged = new AddressTable(c.maxTrackedAddresses)
    const registers = [metrics.registry]
    this.refused = new Counter({ name: 'gateway_connect_refused_total', help: 'Connections refused by reason: rate (closed before CONNECT), banned (CONNACK 5, login back-off), bad_credentials (CONNACK 4), busy (CONNACK 3, password checks queue full), device_id (app with a device\'s client id), takeover (client id in use by another principal), will_topic ($-topic will)', labelNames: ['reason'], registers })
    for (const r of CONNECT_REFUSALS) this.refused.inc({ reason: r }, 0)
    this.loginFailures = new Counter({ name: 'gateway_login_failures_total', help: 'CONNECTs with wrong or missing credentials (--auth file)', registers })
    this.aclDenied = new Counter({ name: 'gateway_acl_denied_total', help: 'Publishes (connection closed) and subscriptions (SUBACK 0x80) refused by the topic rules, by rule', labelNames: ['action', 'rule'], registers })
    for (const r of PUBLISH_DENIALS) this.aclDenied.inc({ action: 'publish', rule: r }, 0)
    for (const r of SUBSCRIBE_DENIALS) this.aclDenied.inc({ action: 'subscribe', rule: r }, 0)
    this.sessionsWiped = new Counter({ name: 'gateway_mqtt_sessions_wiped_total', help: 'Persistent sessions removed (subscriptions and queued messages) because another principal connected with their client id and started clean', registers })
    const gate = this.gate
    const backoff = this.backoff
    new Gauge({ name: 'gateway_auth_checks_running', help: 'Password checks (scrypt) running now', registers, collect () { this.set(gate.running) } }) // eslint-disable-line no-new
    new Gauge({ name: 'gateway_auth_checks_queued', help: 'Password checks waiting for a slot', registers, collect () { this.set(gate.queued) } }) // eslint-disable-line no-new
    new Gauge({ name: 'gateway_login_banned_addresses', help: 'Source addresses in login back-off now', registers, collect () { this.set(backoff.banned()) } }) // eslint-disable-line no-new
  }

  private refuse (reason: ConnectRefusal, fields: Record<string, unknown>, key: string, msg: string): void {
    this.refused.inc({ reason })
    this.warnOnce(reason, fields, key, msg)
  }

  private warnOnce (reason: string, fields: Record<string, unknown>, key: string, msg: string): void {
    const k = `${reason} ${key}`
    if (this.logged.peek(k)) return
    this.logged.touch(k, () => true)
    this.log.warn({ ...fields, address: key, reason }, `${msg} (logged once per address)`)
  }

  /** Called for each new socket before Aedes sees it; false = close it now. */
  admitConnection (socket: Socket): boolean {
    if (!this.rate.enabled || this.local.has(socket.remoteAddress)) return true
    const key = addressKey(socket.remoteAddress)
    if (this.rate.take(key)) return true
    this.refuse('rate', { maxConnectRate: this.c.maxConnectRate, connectBurst: this.c.connectBurst }, key, 'connection rate over the limit; closing new connections from this address')
    return false
  }

  /** `certDevice`: the device a verified TLS client certificate names (no password then). */
  async authenticate (client: Client, username: string | undefined, password: Buffer | undefined, certDevice?: string): Promise<AuthVerdict> {
    const address = plainAddress(remote(client))
    const key = addressKey(address)
    const fields = { clientId: client.id, username }
    const will = (client as Client & { _will?: { topic?: string } })._will
    if (will?.topic?.startsWith('$')) {
      this.refuse('will_topic', { ...fields, topic: will.topic }, key, 'will on a $-topic refused')
      return { ok: false, returnCode: 5, message: 'a will may not use a $-topic' }
    }
    const banMs = this.backoff.bannedFor(key)
    if (banMs > 0) {
      this.refuse('banned', { ...fields, banMs }, key, 'too many failed logins from this address; refusing CONNECTs while the back-off runs')
      return { ok: false, returnCode: 5, message: 'too many failed logins; retry later' }
    }
    let principal: Principal = { role: 'anonymous' }
    if (certDevice !== undefined) {
      principal = { role: 'device', name: certDevice }
    } else if (this.auth) {
      const auth = this.auth
      let p: Awaited<ReturnType<AuthFile['authenticate']>>
      try {
        p = await this.gate.run(() => client.closed ? Promise.resolve(null) : auth.authenticate(client.id, username, password))
      } catch (err) {
        if (!(err instanceof GateFullError)) throw err
        this.refuse('busy', { ...fields, queued: err.queued }, key, 'password checks queue full; CONNACK 3')
        return { ok: false, returnCode: 3, message: 'server busy' }
      }
      if (client.closed) return { ok: false, returnCode: 4, message: 'client went away' }
      if (!p) {
        this.loginFailures.inc()
        const ban = this.backoff.fail(key)
        this.refuse('bad_credentials', { ...fields, banMs: ban }, key, 'authentication failed')
        return { ok: false, returnCode: 4, message: 'bad user name or password' }
      }
      principal = p
      if (p.role === 'app' && this.auth.hasDevice(client.id)) {
        this.refuse('device_id', fields, key, 'an app may not use a device\'s client id')
        return { ok: false, returnCode: 5, message: 'client id reserved for a device' }
      }
    }
    // the holder: the connected client with this id, or one that passed authenticate and that
    // Aedes has not registered yet (two principals CONNECTing at once would each
    // restore, or wipe, the session the other then takes over)
    const registered = (this.aedes() as Aedes & { clients: Record<string, Client | undefined> }).clients[client.id]
    const holder = [registered, this.connecting.get(client.id)].find((c) => c !== undefined && c !== client && !c.closed)
    const prior = holder ? this.state.get(holder) : undefined
    if (prior && !samePrincipal(prior, principal, key)) {
      this.refuse('takeover', { ...fields, holder: prior.address }, key, 'client id in use by another principal; takeover refused')
      return { ok: false, returnCode: 2, message: 'client id in use' }
    }
    // the client went away (a socket reset during authenticate): nothing to decide, and no session to take
    if (client.closed) return { ok: false, returnCode: 3, message: 'client went away' }
    const who: Who = { principal, clientId: client.id, local: this.local.has(address) }
    this.state.set(client, { ...who, key, address, logged: false, own: ownReadings(who) })
    this.connecting.set(client.id, client)
    const conn = client.conn as Partial<Socket> | undefined
    conn?.once?.('close', () => this.registered(client))
    if (this.sessions) {
      const owner = principalKey(principal)
      const previous = await this.sessions.claimSession(client.id, owner, (client as Client & { clean?: boolean }).clean !== false)
      if (previous !== null) {
        this.sessionsWiped.inc()
        this.warnOnce('session_wiped', { ...fields, owner: previous, principal: owner }, key, 'client id of another principal\'s persistent session; that session is removed and this client starts clean')
      }
    }
    return { ok: true }
  }

  /** Aedes registered `client` (its `client` event), or its connection closed: no longer a pending CONNECT. */
  registered (client: Client): void {
    if (this.connecting.get(client.id) === client) this.connecting.delete(client.id)
  }

  principal (client: Client): Principal | undefined { return this.state.get(client)?.principal }

  private who (client: Client): ClientState {
    // a client without state did not pass authenticate (cannot publish): treat as a remote anonymous
    return this.state.get(client) ?? { principal: { role: 'anonymous' }, clientId: client.id, local: false, key: 'unknown', address: 'unknown', logged: false, own: null }
  }

  private denied (client: Client, s: ClientState, action: 'publish' | 'subscribe', rule: string, topic: string): void {
    this.aclDenied.inc({ action, rule })
    if (s.logged) return
    s.logged = true
    // a device publishing to another id's readings topic: its MQTT client id must equal the device id in the topic
    const expected = rule === 'other_device' ? { expected: `devices/${client.id}/readings` } : {}
    const msg = rule === 'other_device'
      ? 'publish to another device\'s readings refused (the MQTT client id must equal the device id in the topic); closing the connection (logged once per client)'
      : action === 'publish' ? 'publish refused by the topic rules; closing the connection (logged once per client)' : 'subscription refused by the topic rules (logged once per client)'
    this.log.warn({ clientId: client.id, address: s.address, action, rule, topic, ...expected }, msg)
  }

  authorizePublish (client: Client, topic: string): { kind: 'allow' } | { kind: 'readings', deviceId: string } | { kind: 'answer', deviceId: string } | { kind: 'deny', error: Error } {
    const s = this.who(client)
    if (s.own !== null && topic === s.own.topic) return s.own.verdict
    const v = publishVerdict(s, topic)
    if (v.kind !== 'deny') return v
    if (v.rule === ('other_device' satisfies PublishDenial)) this.metrics.intake.inc({ outcome: 'acl_denied' })
    this.denied(client, s, 'publish', v.rule, topic)
    return { kind: 'deny', error: new Error(v.message) }
  }

  allowSubscribe (client: Client, filter: string): boolean {
    const s = this.who(client)
    const rule = subscribeDenial(s, filter, this.c.wildcardSubscribe)
    if (rule === null) return true
    this.denied(client, s, 'subscribe', rule, filter)
    return false
  }
}

function samePrincipal (prior: ClientState, p: Principal, key: string): boolean {
  const q = prior.principal
  if (q.role === 'anonymous' || p.role === 'anonymous') return q.role === p.role && prior.key === key
  return q.role === p.role && q.name === p.name
}
