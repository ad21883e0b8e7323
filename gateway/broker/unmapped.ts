/**
 * Publishes on topics the gateway does not store (neither `devices/{id}/readings` nor a
 * topic mapping). By default they are PUBACKed and routed as by a plain broker, which is
 * right for apps, and a silent trap for a new user whose sensor publishes
 * `devices/sensor-1/reading` (singular) or `home/kitchen/temp`: `mosquitto_pub` exits 0 and
 * nothing is stored. So each (client, topic) is warned about once (bounded memory), every
 * such publish is counted in `gateway_unstored_publishes_total`, and the topics with the
 * most of them are kept (bounded) for /status and the operator page. With
 * `--unmatched-topics refuse` a device's publish there closes its connection instead, as a
 * publish to another device's readings does: no PUBACK, so the publisher sees an error.
 */
import type { Logger } from 'pino'
import { Counter, type Registry } from 'prom-client'
import { LogOnce } from '../../common/index.ts'

/** (client, topic) pairs remembered for the once-only warning. */
const MAX_REMEMBERED = 10_000
/** Topics counted one by one; publishes on further topics count under OTHER_TOPICS. */
const MAX_TOPICS = 100
/** The topics /status lists (most publishes first). */
const LISTED_TOPICS = 20
export const OTHER_TOPICS = '(other topics)'

export const UnmatchedTopics = { Accept: 'accept', Refuse: 'refuse' } as const
export type UnmatchedTopicsPolicy = typeof UnmatchedTopics[keyof typeof UnmatchedTopics]

export type UnstoredTopic = { topic: string, publishes: number, refused: number, lastClientId: string, lastAt: number }
export type UnstoredStatus = { policy: UnmatchedTopicsPolicy, publishes: number, refused: number, topics: UnstoredTopic[] }

export class Unmapped {
  private readonly seen = new LogOnce(MAX_REMEMBERED)
  private readonly topics = new Map<string, UnstoredTopic>()
  private readonly counter: Counter<'outcome'>
  private total = 0
  private refusedTotal = 0

  constructor (registry: Registry, private readonly log: Logger, readonly policy: UnmatchedTopicsPolicy = UnmatchedTopics.Accept) {
    this.counter = new Counter({ name: 'gateway_unstored_publishes_total', help: 'Publishes on topics that are neither devices/{id}/readings nor mapped, by outcome: routed (PUBACKed, routed as a plain broker, not stored) or refused (--unmatched-topics refuse: connection closed)', labelNames: ['outcome'], registers: [registry] })
  }

  /**
   * Counts a publish on a topic that stores nothing and says whether to refuse it
   * (`refusable`: the publisher is not an app, whose own topics are what a broker is for).
   */
  note (clientId: string, topic: string, refusable = true): 'route' | 'refuse' {
    const refuse = refusable && this.policy === UnmatchedTopics.Refuse
    this.counter.inc({ outcome: refuse ? 'refused' : 'routed' })
    this.total++
    if (refuse) this.refusedTotal++
    this.count(clientId, topic, refuse)
    if (topic.startsWith('$') || !this.seen.first(`${clientId}\u0000${topic}`)) return refuse ? 'refuse' : 'route'
    const fields = { clientId, topic, expected: `devices/${clientId}/readings`, unmatchedTopics: this.policy }
    if (refuse) this.log.warn(fields, 'publish on a topic that stores nothing (neither devices/{id}/readings nor a topic mapping): refused, closing the connection (logged once per client and topic)')
    else this.log.warn(fields, 'publish on a topic that stores nothing (neither devices/{id}/readings nor a topic mapping): acknowledged and routed to subscribers only, not stored (logged once per client and topic)')
    return refuse ? 'refuse' : 'route'
  }

  private count (clientId: string, topic: string, refused: boolean): void {
    const name = this.topics.has(topic) || this.topics.size < MAX_TOPICS ? topic : OTHER_TOPICS
    let t = this.topics.get(name)
    if (!t) { t = { topic: name, publishes: 0, refused: 0, lastClientId: clientId, lastAt: 0 }; this.topics.set(name, t) }
    t.publishes++
    if (refused) t.refused++
    t.lastClientId = clientId
    t.lastAt = Date.now()
  }

  status (): UnstoredStatus {
    const topics = [...this.topics.values()].sort((a, b) => b.publishes - a.publishes).slice(0, LISTED_TOPICS).map((t) => ({ ...t }))
    return { policy: this.policy, publishes: this.total, refused: this.refusedTotal, topics }
  }
}
