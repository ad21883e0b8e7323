/**
 * Maximum MQTT packet size. Aedes 1.x has none: its parser buffers a packet of any
 * declared length (up to 256 MiB) until it is complete. This guard reads only the fixed
 * headers (type byte + remaining-length varint, [MQTT-2.2.3]) of the bytes Aedes hands to
 * its parser and skips the bodies without copying, so an offender is cut off as soon as it
 * declares an oversize packet, before a single body byte is buffered.
 *
 * It wraps `client._parser.parse` (Aedes 1.x: lib/client.js reads the socket and calls it),
 * reached through aedes-internals.ts, which throws at connection time if that shape ever
 * changes; the oversize-packet integration test guards it, so an Aedes upgrade cannot
 * silently drop the limit.
 */
import type { Client } from 'aedes'
import { clientInternals } from './aedes-internals.ts'

export class PacketScanner {
  private skip = 0
  private inHeader = false
  private headerBytes = 0
  private remaining = 0
  private mult = 1

  constructor (private readonly maxPacketBytes: number) {}

  /** Returns an error message once a packet is over the limit or malformed, else null. */
  scan (buf: Uint8Array): string | null {
    let i = 0
    const n = buf.length
    while (i < n) {
      if (this.skip > 0) {
        const k = Math.min(this.skip, n - i)
        this.skip -= k
        i += k
        continue
      }
      if (!this.inHeader) {
        // packet type byte
        this.inHeader = true
        this.headerBytes = 0
        this.remaining = 0
        this.mult = 1
        i++
        continue
      }
      const b = buf[i++]!
      this.remaining += (b & 127) * this.mult
      this.mult *= 128
      this.headerBytes++
      if (b & 128) {
        if (this.headerBytes >= 4) return 'malformed remaining length (more than 4 bytes)'
        continue
      }
      this.inHeader = false
      if (this.remaining > this.maxPacketBytes) return `packet of ${this.remaining} bytes exceeds maxPacketBytes ${this.maxPacketBytes}`
      this.skip = this.remaining
    }
    return null
  }
}

export function installPacketGuard (client: Client, maxPacketBytes: number, onViolation: (reason: string) => void): void {
  const parser = clientInternals(client).parser
  const scanner = new PacketScanner(maxPacketBytes)
  const parse = parser.parse.bind(parser)
  let dead = false
  parser.parse = (buf: Buffer): unknown => {
    if (dead) return 0
    const bad = scanner.scan(buf)
    if (bad) {
      dead = true
      onViolation(bad)
      return 0
    }
    return parse(buf)
  }
}
