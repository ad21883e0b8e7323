/**
 * Per-client MQTT resource limits (issue 9). Aedes 1.x bounds almost nothing a client can
 * make it hold: topic length, subscriptions per client, will size and client-id length
 * (MQTT 3.1.1) are unlimited, it has no maximum QoS, no publish rate limit, and keeps
 * writing deliveries (a whole retained replay) to a client that already hung up: each such
 * write builds an `Error` whose stack keeps a chain of finished Immediates alive
 * (nodejs/node#66129), ~1.25 KB per failed delivery, millions of them under a fuzzer.
 *
 * Each limit here has a flag with a default (config.ts), one `limit` label value of
 * `gateway_mqtt_limit_exceeded_total` (every time it is hit), and one warn line per
 * offender (client id, or remote address before CONNECT), plus
 * `gateway_mqtt_limit_offenders_total` counting those lines. What is refused:
 * - CONNECT: client id longer than `maxClientIdBytes`, a will over `maxWillBytes`, a will
 *   topic over the topic limits or a will QoS over `maxQos`: connection closed;
 * - PUBLISH: topic over `maxTopicBytes`/`maxTopicLevels`, QoS over `maxQos`, RETAIN when
 *   `retainAvailable` is false or the retained store is full: connection closed (MQTT 3.1.1
 *   has no other way to refuse a PUBLISH); over `publishRateLimit`: the callback (so the
 *   PUBACK and the next socket read: Aedes reads a client's next chunk only when every
 *   packet of the last one is done) waits until the token bucket has a token again, or
 *   with `publishRateAction=disconnect` the connection is closed;
 * - SUBSCRIBE: a filter over the topic limits or beyond `maxSubscriptions`: SUBACK 0x80
 *   for that filter; a QoS over `maxQos` is granted as `maxQos` [MQTT-3.9.3-1];
 * - QoS 2 in flight: Aedes' `maxInflightInbound` closes the connection;
 * - retained store, offline queues, sessions: persistence.ts.
 * Deliveries to a closed client are dropped before Aedes writes them (counted in
 * `gateway_mqtt_deliveries_skipped_total`); for a persistent session they stay queued.
 */
import type { Aedes, AedesOptions, Client, Subscription } from 'aedes'
import { Counter, Gauge } from 'prom-client'
import type { Logger } from 'pino'
import { HotCounter, type HotCell } from '../metrics/hot-counter.ts'
import type { Metrics } from '../metrics/index.ts'
import type { BrokerLimits } from './limits-config.ts'
import { BoundedPersistence, type PersistenceLimit } from './persistence.ts'

export const LIMITS = [
  'client_id_bytes', 'will_bytes', 'topic_bytes', 'topic_levels', 'max_qos', 'retain_unavailable',
  'retained_messages', 'retained_bytes', 'subscriptions', 'queued_messages', 'queued_bytes_total',
  'sessions', 'inflight_inbound', 'publish_rate'
] as const
export type LimitName = (typeof LIMITS)[number]

/**
 * An offender's id as remembered and logged: the over-long client ids this refuses (up to a
 * packet's size) were kept whole, 10,000 of them per limit, and grew the heap by ~2 MB
 * every 10 s under the fuzzer.
 */
function shortId (id: string): string {
  return id.length <= 80 ? id : `${id.slice(0, 64)}... (${id.length} chars)`
}

/** Offenders remembered for "log once", per limit; past this that limit's memory is reset (and they may be logged again). */
const MAX_REMEMBERED_OFFENDERS = 10_000

type Deliver = (packet: unknown, cb: () => void) => void
type AedesClientInternals = { deliverQoS: Deliver, deliver0: Deliver, closed: boolean, conn: { destroyed: boolean, remoteAddress?: string } }
type Bucket = { tokens: number, at: number }
type PublishLike = { topic: string, qos: number, retain: boolean, payload: Buffer | string }

export type Refusal = { limit: LimitName, message: string }

const bytesOf = (s: string | Buffer): number => typeof s === 'string' ? Buffer.byteLength(s) : s.length
const levelsOf = (topic: string): number => { let n = 1; for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 47) n++; return n }

export class Limits {
  readonly persistence: BoundedPersistence
  private readonly hits: Counter<'limit'>
  private readonly offenders: Counter<'limit'>
  private readonly expired: Counter
  private readonly skipped: Counter
  private readonly logged = new Map<LimitName, Set<string>>()
  /** per limit, the cell of `gateway_mqtt_limit_exceeded_total` (plain numbers, hot-counter.ts) */
  private readonly hitCells: Record<LimitName, HotCell>
  private readonly buckets = new WeakMap<object, Bucket>()
  private readonly subs = new WeakMap<object, Set<string>>()
  private sweepTimer: NodeJS.Timeout | null = null
  private readonly log: Logger

  constructor (readonly config: BrokerLimits, metrics: Metrics, logger: Logger) {
    this.log = logger.child({ component: 'limits' })
    const registers = [metrics.registry]
    // a hostile fan-out hits a limit once per session per message: plain-number cells
    const hot = new HotCounter({ name: 'gateway_mqtt_limit_exceeded_total', help: 'MQTT limit hits by limit (a refused packet, a message not queued or retained, a session evicted, a publish slowed)', label: 'limit', registers })
    this.hits = hot.counter
    this.hitCells = Object.fromEntries(LIMITS.map((l) => [l, hot.cell(l)])) as Record<LimitName, HotCell>
    this.offenders = new Counter({ name: 'gateway_mqtt_limit_offenders_total', help: 'Distinct offenders logged per limit (one warn line each)', labelNames: ['limit'], registers })
    this.expired = new Counter({ name: 'gateway_mqtt_sessions_expired_total', help: 'Persistent sessions removed after sessionExpirySec offline', registers })
    this.skipped = new Counter({ name: 'gateway_mqtt_deliveries_skipped_total', help: 'Deliveries not written because the client had already gone (issue 9: writes to closed sockets leaked)', registers })
    for (const l of LIMITS) { this.hits.inc({ limit: l }, 0); this.offenders.inc({ limit: l }, 0) }
    this.persistence = new BoundedPersistence(config, {
      limit: (limit: PersistenceLimit, clientId: string) => this.hit(limit, clientId, {}),
      expired: (clientId: string) => { this.expired.inc(); this.log.info({ clientId }, 'persistent session expired') }
    })
    const p = this.persistence
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({ name, help, registers, collect () { this.set(read()) } }) // eslint-disable-line no-new
    }
    gauge('gateway_mqtt_retained_messages', 'Retained messages held', () => p.retainedCount)
    gauge('gateway_mqtt_retained_bytes', 'Bytes (topic + payload) of the retained messages held', () => p.retainedSize)
    gauge('gateway_mqtt_queued_messages', 'Messages queued for persistent sessions (offline or unacknowledged)', () => p.queuedMessages)
    gauge('gateway_mqtt_queued_bytes', 'Bytes queued for persistent sessions (payload + 256 a message)', () => p.queuedSize)
    gauge('gateway_mqtt_sessions', 'Persistent (clean=false) sessions kept, online or offline', () => p.sessionCount)
  }

  /**
   * The broker's `Aedes.createBroker` options with the limits in front of its hooks: a
   * refused CONNECT, PUBLISH or subscription never reaches them (nor the intake), and the
   * bounded persistence and Aedes' own QoS 2 window and topic-level bounds set.
   */
  wrap (opts: AedesOptions): AedesOptions {
    const { preConnect, authorizePublish, authorizeSubscribe } = opts
    return {
      ...opts,
      persistence: this.persistence,
      maxInflightInbound: this.config.maxInflightInbound,
      // Aedes' own level check (its default and ceiling, 100) runs before the hooks and would
      // close offenders uncounted: ours (maxTopicLevels <= 100) comes first and counts them
      maxTopicLevels: 100,
      preConnect: (client, packet, cb) => {
        const refused = this.checkConnect(client, packet)
        if (refused) { cb(new Error(refused.message), false); return }
        if (preConnect) preConnect(client, packet, cb); else cb(null, true)
      },
      authorizePublish: (client, packet, cb) => {
        if (!client) { if (authorizePublish) authorizePublish(client, packet, cb); else cb(null); return } // the gateway's own publishes
        this.checkPublish(client, packet, (err) => {
          if (err) cb(err)
          else if (authorizePublish) authorizePublish(client, packet, cb)
          else cb(null)
        })
      },
      authorizeSubscribe: (client, sub, cb) => {
        const granted = this.checkSubscribe(client, sub)
        if (!granted) { cb(null, null); return } // SUBACK 0x80 for this filter
        if (authorizeSubscribe) authorizeSubscribe(client, granted, cb); else cb(null, granted)
      }
    }
  }

  /** Wires the session tracking, the retained replay guard and the QoS 2 counter to the broker's events. */
  install (aedes: Aedes): void {
    const p = this.persistence
    aedes.on('client', (c) => p.clientConnected(c))
    aedes.on('clientDisconnect', (c) => p.clientDisconnected(c))
    // Aedes asks for the retained stream right after this event, in the same tick
    aedes.on('subscribe', (_subs, c) => { p.replayClient = c as unknown as { id: string, closed: boolean } })
    aedes.on('unsubscribe', (topics, c) => { const s = this.subs.get(c); if (s) for (const t of topics) s.delete(t) })
    const overInflight = new WeakSet<object>() // every packet of the offending chunk fails: count the client once
    aedes.on('clientError', (c, err) => {
      if (!err.message.startsWith('maxInflightInbound exceeded') || overInflight.has(c)) return
      overInflight.add(c)
      this.hit('inflight_inbound', c.id, {})
    })
    const everyMs = Math.min(60_000, Math.max(1000, this.config.sessionExpirySec * 250))
    this.sweepTimer = setInterval(() => p.expire(), everyMs)
    this.sweepTimer.unref()
  }

  /** Per connection: deliveries to a client that is gone are dropped, not written. */
  attach (client: Client): void {
    const c = client as unknown as AedesClientInternals
    const guard = (orig: Deliver): Deliver => (packet, cb) => {
      if (c.closed || c.conn.destroyed) { this.skipped.inc(); cb(); return }
      orig(packet, cb)
    }
    c.deliverQoS = guard(c.deliverQoS)
    c.deliver0 = guard(c.deliver0)
  }

  close (): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.sweepTimer = null
  }

  /** CONNECT: a refusal closes the connection. */
  checkConnect (client: Client, packet: { clientId: string, will?: { topic: string, payload: Buffer | string, qos?: number } }): Refusal | null {
    const who = packet.clientId || this.remote(client)
    if (bytesOf(packet.clientId) > this.config.maxClientIdBytes) {
      return this.refuse('client_id_bytes', who, `client id of ${bytesOf(packet.clientId)} bytes is over maxClientIdBytes ${this.config.maxClientIdBytes}`)
    }
    const will = packet.will
    if (will) {
      const size = bytesOf(will.topic) + bytesOf(will.payload ?? '')
      if (size > this.config.maxWillBytes) return this.refuse('will_bytes', who, `will of ${size} bytes is over maxWillBytes ${this.config.maxWillBytes}`)
      const t = this.topicRefusal(will.topic, who)
      if (t) return t
      if ((will.qos ?? 0) > this.config.maxQos) return this.refuse('max_qos', who, `will QoS ${will.qos} is over maxQos ${this.config.maxQos}`)
    }
    return null
  }

  /**
   * PUBLISH, from authorizePublish before anything else: an Error closes the connection;
   * otherwise `next` runs now or, over the publish rate, once the client is back under it.
   */
  checkPublish (client: Client, packet: PublishLike, next: (err?: Error) => void): void {
    const who = client.id
    const refused = this.topicRefusal(packet.topic, who) ??
      (packet.qos > this.config.maxQos ? this.refuse('max_qos', who, `PUBLISH QoS ${packet.qos} is over maxQos ${this.config.maxQos}`) : null) ??
      (packet.retain ? this.retainRefusal(packet, who) : null)
    if (refused) { next(new Error(refused.message)); return }
    const waitMs = this.take(client)
    if (waitMs <= 0) { next(); return }
    if (this.config.publishRateAction === 'disconnect') {
      const r = this.refuse('publish_rate', who, `over publishRateLimit ${this.config.publishRateLimit}/s`)
      next(new Error(r.message))
      return
    }
    this.hit('publish_rate', who, { waitMs: Math.round(waitMs) })
    setTimeout(next, waitMs)
  }

  /** SUBSCRIBE, per filter: null refuses it (SUBACK 0x80), else the subscription to grant. */
  checkSubscribe (client: Client, sub: Subscription): Subscription | null {
    const who = client.id
    if (this.topicRefusal(sub.topic, who)) return null
    let set = this.subs.get(client)
    if (!set) { set = new Set(); this.subs.set(client, set) }
    if (!set.has(sub.topic)) {
      if (set.size >= this.config.maxSubscriptions) {
        this.refuse('subscriptions', who, `over maxSubscriptions ${this.config.maxSubscriptions}`)
        return null
      }
      set.add(sub.topic)
    }
    if (sub.qos > this.config.maxQos) sub.qos = this.config.maxQos as Subscription['qos']
    return sub
  }

  private retainRefusal (packet: PublishLike, who: string): Refusal | null {
    if (!this.config.retainAvailable) return this.refuse('retain_unavailable', who, 'retained messages are not available (--retain-available false)')
    if (bytesOf(packet.payload) === 0) return null // clears a retained message
    const limit = this.persistence.retainedRefusal(packet.topic, bytesOf(packet.topic) + bytesOf(packet.payload))
    return limit ? this.refuse(limit as LimitName, who, `retained store full (${limit === 'retained_messages' ? `maxRetainedMessages ${this.config.maxRetainedMessages}` : `maxRetainedBytes ${this.config.maxRetainedBytes}`})`) : null
  }

  private topicRefusal (topic: string, who: string): Refusal | null {
    const bytes = bytesOf(topic)
    if (bytes > this.config.maxTopicBytes) return this.refuse('topic_bytes', who, `topic of ${bytes} bytes is over maxTopicBytes ${this.config.maxTopicBytes}`)
    const levels = levelsOf(topic)
    if (levels > this.config.maxTopicLevels) return this.refuse('topic_levels', who, `topic of ${levels} levels is over maxTopicLevels ${this.config.maxTopicLevels}`)
    return null
  }

  /** Takes a token; returns 0, or how long to wait until the bucket is back at zero. */
  private take (client: object): number {
    const now = performance.now()
    const rate = this.config.publishRateLimit
    const burst = this.config.publishRateBurst
    let b = this.buckets.get(client)
    if (!b) { b = { tokens: burst, at: now }; this.buckets.set(client, b) }
    b.tokens = Math.min(burst, b.tokens + (now - b.at) * rate / 1000)
    b.at = now
    b.tokens -= 1
    return b.tokens >= 0 ? 0 : -b.tokens * 1000 / rate
  }

  private remote (client: Client): string {
    return (client as unknown as AedesClientInternals).conn.remoteAddress ?? 'unknown'
  }

  private refuse (limit: LimitName, who: string, message: string): Refusal {
    this.hit(limit, who, { reason: message })
    return { limit, message }
  }

  private hit (limit: LimitName, whoRaw: string, fields: Record<string, unknown>): void {
    this.hitCells[limit].inc()
    const who = shortId(whoRaw)
    let seen = this.logged.get(limit) // per limit, so the hot path builds no key string
    if (!seen) { seen = new Set(); this.logged.set(limit, seen) }
    if (seen.has(who)) return
    if (seen.size >= MAX_REMEMBERED_OFFENDERS) seen.clear()
    seen.add(who)
    this.offenders.inc({ limit })
    this.log.warn({ limit, clientId: who, ...fields }, 'client over an MQTT limit')
  }
}
