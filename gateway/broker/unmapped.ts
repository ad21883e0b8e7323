/**
 * Publishes on topics the gateway does not store (neither `devices/{id}/readings` nor a
 * topic mapping): they are PUBACKed and routed as by a plain broker, which is right for
 * apps, and a silent trap for a new user whose sensor publishes `home/kitchen/temp`
 * (issue 15). Each (client, topic) is logged once (bounded memory) and every such publish
 * is counted in `gateway_unstored_publishes_total`.
 */
import type { Logger } from 'pino'
import { Counter, type Registry } from 'prom-client'
import { LogOnce } from '../../common/index.ts'

const MAX_REMEMBERED = 10_000

export class Unmapped {
  private readonly seen = new LogOnce(MAX_REMEMBERED)
  private readonly counter: Counter

  constructor (registry: Registry, private readonly log: Logger) {
    this.counter = new Counter({ name: 'gateway_unstored_publishes_total', help: 'Publishes on topics that are neither devices/{id}/readings nor mapped: routed as a plain broker, not stored', registers: [registry] })
  }

  note (clientId: string, topic: string): void {
    this.counter.inc()
    if (topic.startsWith('$') || !this.seen.first(`${clientId}\u0000${topic}`)) return
    this.log.info({ clientId, topic, expected: `devices/${clientId}/readings` }, 'publish on a topic that is not stored (neither devices/{id}/readings nor a topic mapping): routed to subscribers only')
  }
}
