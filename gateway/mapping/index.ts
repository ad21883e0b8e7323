/**
 * Topic mappings (docs/mapping.md): publishes on configured non-`devices/` topics become
 * readings of a device, through the same durable intake as `devices/{id}/readings` (dead
 * letter for what cannot be read, dedup when the mapping names a seq field, group commit,
 * PUBACK after the write). Without a seq a mapped reading is identified by its receive
 * time: delivered at least once (a client's retransmit may store it twice).
 *
 * ACL: with `--auth none` any client may publish a mapped topic; with `--auth file` any
 * authenticated principal, device or app (firmwares such as Tasmota choose their own client
 * ids); `clientIdMustMatch` restricts a mapping to the client whose id is the device id.
 */
import type { Client, PublishPacket } from 'aedes'
import type { Logger } from 'pino'
import { Counter, type Registry } from 'prom-client'
import { isValidDeviceId, ValidationError } from '../../protocol/index.ts'
import type { Intake } from '../intake/index.ts'
import type { Mapping } from './config.ts'
import { compileTopic, fill, type Matcher } from './match.ts'
import { mappedReading } from './payload.ts'

export { parseMappings, type Mapping } from './config.ts'

type Callback = (err?: Error | null) => void

export class Mapper {
  private readonly rules: Array<{ m: Mapping, match: Matcher }>
  private readonly counter: Counter
  private readonly log: Logger

  constructor (mappings: Mapping[], private readonly intake: Intake, private readonly maxPayloadBytes: number, registry: Registry, logger: Logger) {
    this.rules = mappings.map((m) => ({ m, match: compileTopic(m.topic) }))
    this.log = logger.child({ component: 'mapping' })
    this.counter = new Counter({ name: 'gateway_mapped_publishes_total', help: 'Publishes on mapped topics handed to the intake as readings', registers: [registry] })
  }

  get size (): number { return this.rules.length }

  /** Takes the publish if a mapping matches its topic (then `cb` is called); false otherwise. */
  handle (client: Client, packet: PublishPacket, cb: Callback): boolean {
    for (const { m, match } of this.rules) {
      const named = match(packet.topic)
      if (!named) continue
      const device = fill(m.device, named)
      if (m.clientIdMustMatch && client.id !== device) {
        this.log.warn({ clientId: client.id, topic: packet.topic, device }, 'mapped topic refused: this mapping requires the client id to be the device id; closing the connection')
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
