/**
 * Per-client MQTT resource limits, the broker's one handle on them. Aedes 1.x
 * bounds almost nothing a client can make it hold: topic length, subscriptions per client,
 * will size and client-id length (MQTT 3.1.1) are unlimited, it has no maximum QoS, no
 * publish rate limit, and keeps writing deliveries to a client that already hung up.
 *
 * Each limit has a flag with a default (limits-config.ts), one `limit` label value of
 * `gateway_mqtt_limit_exceeded_total` (every time it is hit), and one warn line per
 * offender. The parts, one concern a file:
 * - limit-rules.ts: what CONNECT, PUBLISH and SUBSCRIBE may carry, and what is refused;
 * - limit-rate.ts: the per-client PUBLISH token bucket;
 * - limit-hooks.ts: the rules in front of the Aedes hooks, and the broker events wired;
 * - limit-deliveries.ts: the monkey-patch that drops deliveries to closed clients;
 * - limit-offenders.ts: a hit counted, its offender logged once (bounded memory);
 * - limit-metrics.ts: the limit names (the metrics' `limit` label) and the metrics;
 * - persistence.ts: the retained store, offline queues and sessions, bounded;
 * - QoS 2 in flight: Aedes' `maxInflightInbound` closes the connection.
 */
import type { Aedes, AedesOptions, Client, Subscription } from 'aedes'
import type { Logger } from 'pino'
import type { Metrics } from '../metrics/index.ts'
import { guardDeliveries } from './limit-deliveries.ts'
import { limitedOptions, watchBroker } from './limit-hooks.ts'
import { LimitMetrics } from './limit-metrics.ts'
import { OffenderLog } from './limit-offenders.ts'
import { PublishRate } from './limit-rate.ts'
import { LimitRules, type Refusal } from './limit-rules.ts'
import type { BrokerLimits } from './limits-config.ts'
import { BoundedPersistence, type PersistenceLimit } from './persistence.ts'

export { LIMITS, type LimitName } from './limit-metrics.ts'
export type { Refusal } from './limit-rules.ts'

export class Limits {
  readonly persistence: BoundedPersistence
  private readonly metrics: LimitMetrics
  private readonly offenders: OffenderLog
  private readonly rules: LimitRules
  private sweepTimer: NodeJS.Timeout | null = null
  private readonly log: Logger

  constructor (readonly config: BrokerLimits, metrics: Metrics, logger: Logger) {
    this.log = logger.child({ component: 'limits' })
    this.metrics = new LimitMetrics(metrics.registry)
    this.offenders = new OffenderLog(this.metrics, this.log)
    this.persistence = new BoundedPersistence(config, {
      limit: (limit: PersistenceLimit, clientId: string) => this.offenders.hit(limit, clientId, {}),
      expired: (clientId: string) => { this.metrics.expired.inc(); this.log.info({ clientId }, 'persistent session expired') }
    })
    this.metrics.watch(metrics.registry, this.persistence)
    this.rules = new LimitRules(config, this.persistence, new PublishRate(config.publishRateLimit, config.publishRateBurst), this.offenders)
  }

  /**
   * The broker's `Aedes.createBroker` options with the limits in front of its hooks: a
   * refused CONNECT, PUBLISH or subscription never reaches them (nor the intake), and the
   * bounded persistence and Aedes' own QoS 2 window and topic-level bounds set.
   */
  wrap (opts: AedesOptions): AedesOptions {
    return limitedOptions(opts, this.rules, this.persistence, this.config)
  }

  /** Wires the session tracking, the retained replay guard and the QoS 2 counter to the broker's events. */
  install (aedes: Aedes): void {
    this.sweepTimer = watchBroker(aedes, this.rules, this.persistence, this.offenders, this.config.sessionExpirySec)
  }

  /** Per connection: deliveries to a client that is gone are dropped, not written. */
  attach (client: Client): void {
    guardDeliveries(client, () => this.metrics.skipped.inc())
  }

  /** After the broker closed: no sweep, no publish left waiting for the rate; idempotent. */
  close (): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.sweepTimer = null
    this.rules.close()
  }

  checkConnect (client: Client, packet: Parameters<LimitRules['checkConnect']>[1]): Refusal | null { return this.rules.checkConnect(client, packet) }
  checkPublish (client: Client, packet: Parameters<LimitRules['checkPublish']>[1], next: (err?: Error) => void): void { this.rules.checkPublish(client, packet, next) }
  checkSubscribe (client: Client, sub: Subscription): Subscription | null { return this.rules.checkSubscribe(client, sub) }
}
