/**
 * Which devices publish JSON, so their receipts come back in JSON (a device that
 * speaks JSON should not need a CBOR decoder to read its receipts). The latest reading
 * decides; bounded like the dedup cache (a forgotten device gets CBOR, the default).
 */
export type PayloadFormat = 'cbor' | 'json'

export class PayloadFormats {
  private readonly json = new Set<string>()
  /** devices whose latest reading was CBOR (their commands go out in CBOR; everyone else's in JSON) */
  private readonly cbor = new Set<string>()

  constructor (private readonly maxDevices: number) {}

  /** Records the format of a reading's raw payload (first non-whitespace byte `{`: JSON). */
  note (device: string, raw: Uint8Array): void {
    let i = 0
    while (i < raw.length && (raw[i] === 0x20 || raw[i] === 0x0a || raw[i] === 0x0d || raw[i] === 0x09)) i++
    if (raw[i] === 0x7b) {
      if (this.json.has(device)) return
      if (this.json.size >= this.maxDevices) this.json.delete(this.json.values().next().value!)
      this.json.add(device)
      if (this.cbor.size > 0) this.cbor.delete(device)
    } else {
      if (this.json.size > 0) this.json.delete(device)
      if (this.cbor.has(device)) return
      if (this.cbor.size >= this.maxDevices) this.cbor.delete(this.cbor.values().next().value!)
      this.cbor.add(device)
    }
  }

  /** The format of a device's commands (docs/commands.md): CBOR when its latest reading was, JSON otherwise. */
  commandFormat (device: string): PayloadFormat {
    return this.cbor.has(device) ? 'cbor' : 'json'
  }

  of (device: string): PayloadFormat {
    return this.json.has(device) ? 'json' : 'cbor'
  }
}
