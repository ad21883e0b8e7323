/**
 * Topic mappings (docs/mapping.md): publishes on configured non-`devices/` topics become
 * readings of a device, through the same durable intake as `devices/{id}/readings` (dead
 * letter for what cannot be read, dedup when the mapping names a seq field, group commit,
 * PUBACK after the write). Without a seq a mapped reading is identified by its receive
 * time: delivered at least once (a client's retransmit may store it twice).
 *
 * ACL (publisher.ts): a client may produce readings only of the device whose id is its
 * client id, as on `devices/{id}/readings`; apps (`--auth file`) and mappings with
 * `anyDevice: true` (bridges) may produce any device's; `clientIdMustMatch` holds apps to
 * it too. A refused publish closes the connection, as the topic rules do, and stores nothing.
 */
import type { Client, PublishPacket } from 'aedes'
import type { Logger } from 'pino'
import { Counter, type Registry } from 'prom-client'
import { isValidDeviceId, ValidationError } from '../../protocol/index.ts'
import { LogOnce } from '../../common/index.ts'
import type { Principal } from '../broker/acl.ts'
import type { Intake } from '../intake/index.ts'
import type { Mapping } from './config.ts'
import { compileTopic, fill, type Matcher } from './match.ts'
import { mappedReading } from './payload.ts'
import { MAPPED_DENIALS, mappedDenial } from './publisher.ts'

export { parseMappings, type Mapping } from './config.ts'
export { mappedDenial, type MappedDenial } from './publisher.ts'

type Callback = (err?: Error | null) => void

/** Clients whose refusal was logged (one warning per client); cleared when full. */
const MAX_LOGGED = 10_000

export class Mapper {
  private readonly rules: Array<{ m: Mapping, match: Matcher }>
  private readonly counter: Counter
  private readonly denied: Counter<'rule'>
  private readonly logged = new LogOnce(MAX_LOGGED)
  private readonly log: Logger

  constructor (mappings: Mapping[], private readonly intake: Intake, private readonly maxPayloadBytes: number, registry: Registry, logger: Logger) {
    this.rules = mappings.map((m) => ({ m, match: compileTopic(m.topic) }))
    this.log = logger.child({ component: 'mapping' })
    this.counter = new Counter({ name: 'gateway_mapped_publishes_total', help: 'Publishes on mapped topics handed to the intake as readings', registers: [registry] })
    this.denied = new Counter({ name: 'gateway_mapping_denied_total', help: 'Publishes on mapped topics refused (connection closed, nothing stored) by rule: other_device (a client producing another device\'s reading: docs/mapping.md), client_id (clientIdMustMatch)', labelNames: ['rule'], registers: [registry] })
    for (const r of MAPPED_DENIALS) this.denied.inc({ rule: r }, 0)
  }

  get size (): number { return this.rules.length }

  /**
   * Takes the publish if a mapping matches its topic (then `cb` is called); false otherwise.
   * `principal`: who the client authenticated as (undefined: as anonymous).
   */
  handle (client: Client, packet: PublishPacket, cb: Callback, principal?: Principal): boolean {
    for (const { m, match } of this.rules) {
      const named = match(packet.topic)
      if (!named) continue
      const device = fill(m.device, named)
      const rule = mappedDenial(m, principal, client.id, device)
      if (rule !== null) {
        this.denied.inc({ rule })
        if (this.logged.first(client.id)) {
          const why = rule === 'client_id' ? 'this mapping requires the client id to be the device id' : 'a client may produce readings only of its own device id (docs/mapping.md: apps, anyDevice)'
          this.log.warn({ clientId: client.id, role: principal?.role ?? 'anonymous', topic: packet.topic, device, rule, why, mapping: m.topic }, 'mapped publish refused; closing the connection (logged once per client)')
        }
        cb(new Error(`client ${client.id} may not publish readings of ${device}`))
        return true
      }
      this.counter.inc()
      const payload = packet.payload as Buffer
      this.intake.handle(client, device, packet, cb, () => {
        if (!isValidDeviceId(device)) throw new ValidationError('device', `${JSON.stringify(device)} (from topic ${packet.topic}) is not a valid device id`)
        return mappedReading(m, named, payload, this.maxPayloadBytes)
      })
      return true
    }
    return false
  }
}
