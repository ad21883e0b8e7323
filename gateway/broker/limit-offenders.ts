/**
 * Counting a limit hit and logging its offender once: every hit increments
 * `gateway_mqtt_limit_exceeded_total{limit}`; the first hit of an offender (client id, or
 * remote address before CONNECT) on a limit writes one warn line and increments
 * `gateway_mqtt_limit_offenders_total{limit}`. A fuzzer hitting a limit a million times
 * makes one line, not a million.
 *
 * Memory is bounded: at most MAX_REMEMBERED_OFFENDERS ids a limit (past that, that limit
 * forgets them all and may log them again), and each id is shortened before it is kept.
 * Guarded by test/unit/broker-limits-memory.test.ts.
 */
import type { Logger } from 'pino'
import { LogOnce } from '../../common/index.ts'
import { LIMITS, type LimitMetrics, type LimitName } from './limit-metrics.ts'

/** Offenders remembered for "log once", per limit; past this that limit's memory is reset (and they may be logged again). */
const MAX_REMEMBERED_OFFENDERS = 10_000

/**
 * An offender's id as remembered and logged: the over-long client ids this refuses (up to a
 * packet's size) were kept whole, 10,000 of them per limit, and grew the heap by ~2 MB
 * every 10 s under the fuzzer.
 */
function shortId (id: string): string {
  return id.length <= 80 ? id : `${id.slice(0, 64)}... (${id.length} chars)`
}

export class OffenderLog {
  /** per limit, so the hot path builds no key string */
  private readonly logged: Record<LimitName, LogOnce>

  constructor (private readonly metrics: LimitMetrics, private readonly log: Logger) {
    this.logged = Object.fromEntries(LIMITS.map((l) => [l, new LogOnce(MAX_REMEMBERED_OFFENDERS)])) as Record<LimitName, LogOnce>
  }

  hit (limit: LimitName, whoRaw: string, fields: Record<string, unknown>): void {
    this.metrics.hits[limit].inc()
    const who = shortId(whoRaw)
    if (!this.logged[limit].first(who)) return
    this.metrics.offenders.inc({ limit })
    this.log.warn({ limit, clientId: who, ...fields }, 'client over an MQTT limit')
  }
}
