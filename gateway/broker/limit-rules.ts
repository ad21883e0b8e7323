/**
 * The limit rules: what a CONNECT, PUBLISH or SUBSCRIBE may carry, checked before
 * the broker's own hooks (limit-hooks.ts puts them in front). The flags and defaults are in
 * limits-config.ts, the table in docs/security-limits.md. What is refused:
 * - CONNECT: client id longer than `maxClientIdBytes`, a will over `maxWillBytes`, a will
 *   topic over the topic limits or a will QoS over `maxQos`: connection closed;
 * - PUBLISH: topic over `maxTopicBytes`/`maxTopicLevels`, QoS over `maxQos`, RETAIN when
 *   `retainAvailable` is false or the retained store is full: connection closed (MQTT 3.1.1
 *   has no other way to refuse a PUBLISH); over `publishRateLimit` (limit-rate.ts): the
 *   callback (so the PUBACK and the next socket read: Aedes reads a client's next chunk only
 *   when every packet of the last one is done) waits until the token bucket has a token
 *   again, or with `publishRateAction=disconnect` the connection is closed;
 * - SUBSCRIBE: a filter over the topic limits or beyond `maxSubscriptions`: SUBACK 0x80
 *   for that filter; a QoS over `maxQos` is granted as `maxQos` [MQTT-3.9.3-1].
 * Every refusal is a hit of its limit (limit-offenders.ts). Guarded by
 * test/faults/hostile-clients.test.ts and test/integration/paho-limits.test.ts.
 */
import type { Client, Subscription } from 'aedes'
import { remoteOf } from './limit-deliveries.ts'
import type { LimitName } from './limit-metrics.ts'
import type { OffenderLog } from './limit-offenders.ts'
import type { PublishRate } from './limit-rate.ts'
import type { BrokerLimits } from './limits-config.ts'
import type { BoundedPersistence } from './persistence.ts'

export type Refusal = { limit: LimitName, message: string }

type PublishLike = { topic: string, qos: number, retain: boolean, payload: Buffer | string }

const bytesOf = (s: string | Buffer): number => typeof s === 'string' ? Buffer.byteLength(s) : s.length
const levelsOf = (topic: string): number => { let n = 1; for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 47) n++; return n }

export class LimitRules {
  private readonly subs = new WeakMap<object, Set<string>>()
  /** The timers of publishes waiting for the publish rate, cleared by `close`. */
  private readonly slowed = new Set<NodeJS.Timeout>()

  constructor (
    private readonly config: BrokerLimits,
    private readonly persistence: BoundedPersistence,
    private readonly rate: PublishRate,
    private readonly offenders: OffenderLog
  ) {}

  /** CONNECT: a refusal closes the connection. */
  checkConnect (client: Client, packet: { clientId: string, will?: { topic: string, payload: Buffer | string, qos?: number } }): Refusal | null {
    const who = packet.clientId || remoteOf(client)
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
    const waitMs = this.rate.take(client)
    if (waitMs <= 0) { next(); return }
    if (this.config.publishRateAction === 'disconnect') {
      const r = this.refuse('publish_rate', who, `over publishRateLimit ${this.config.publishRateLimit}/s`)
      next(new Error(r.message))
      return
    }
    this.offenders.hit('publish_rate', who, { waitMs: Math.round(waitMs) })
    const timer = setTimeout(() => { this.slowed.delete(timer); next() }, waitMs)
    this.slowed.add(timer)
  }

  /**
   * After the broker has closed its clients: a publish still waiting for the rate is dropped
   * (its client is gone, no PUBACK is due), so no timer outlives the gateway and none runs
   * the broker's hooks, and the intake behind them, after they closed.
   */
  close (): void {
    for (const t of this.slowed) clearTimeout(t)
    this.slowed.clear()
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

  /** UNSUBSCRIBE: the filters no longer count against maxSubscriptions. */
  unsubscribed (client: object, topics: string[]): void {
    const s = this.subs.get(client)
    if (s) for (const t of topics) s.delete(t)
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

  private refuse (limit: LimitName, who: string, message: string): Refusal {
    this.offenders.hit(limit, who, { reason: message })
    return { limit, message }
  }
}
