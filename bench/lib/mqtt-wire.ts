/**
 * Minimal MQTT 3.1.1 framing for the load generator and the instant-ack sink: CONNECT,
 * CONNACK, PUBLISH (QoS 1), PUBACK, PINGREQ/PINGRESP, DISCONNECT, and a streaming frame
 * splitter. This is load-generator code, not product code: it trusts its peer enough to
 * measure it, and stops (throws) on anything it does not understand.
 *
 * Fixed header: byte 0 = type << 4 | flags; then the remaining length as a base-128
 * varint of at most 4 bytes [MQTT-2.2.3].
 */
export const PacketType = {
  Connect: 1,
  Connack: 2,
  Publish: 3,
  Puback: 4,
  Pingreq: 12,
  Pingresp: 13,
  Disconnect: 14
} as const

function varintLength (n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4
}

function writeVarint (buf: Buffer, pos: number, n: number): number {
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    buf[pos++] = b
  } while (n > 0)
  return pos
}

/** CONNECT, MQTT 3.1.1 (level 4), clean session, no will, no credentials. */
export function connectPacket (clientId: string, keepaliveS: number): Buffer {
  const id = Buffer.from(clientId, 'utf8')
  const remaining = 10 + 2 + id.length
  const buf = Buffer.allocUnsafe(1 + varintLength(remaining) + remaining)
  buf[0] = PacketType.Connect << 4
  let p = writeVarint(buf, 1, remaining)
  buf.writeUInt16BE(4, p); p += 2
  buf.write('MQTT', p, 'latin1'); p += 4
  buf[p++] = 4 // protocol level 3.1.1
  buf[p++] = 0x02 // clean session
  buf.writeUInt16BE(keepaliveS, p); p += 2
  buf.writeUInt16BE(id.length, p); p += 2
  id.copy(buf, p)
  return buf
}

export function connackPacket (returnCode: number): Buffer {
  return Buffer.from([PacketType.Connack << 4, 2, 0, returnCode])
}

export function pubackPacket (packetId: number): Buffer {
  return Buffer.from([PacketType.Puback << 4, 2, packetId >> 8, packetId & 0xff])
}

export const PINGREQ = Buffer.from([PacketType.Pingreq << 4, 0])
export const PINGRESP = Buffer.from([PacketType.Pingresp << 4, 0])
export const DISCONNECT = Buffer.from([PacketType.Disconnect << 4, 0])

/** The UTF-8 topic with its 2-byte length prefix, computed once per connection. */
export function topicField (topic: string): Buffer {
  const t = Buffer.from(topic, 'utf8')
  const out = Buffer.allocUnsafe(2 + t.length)
  out.writeUInt16BE(t.length, 0)
  t.copy(out, 2)
  return out
}

/** PUBLISH QoS 1, dup=0, retain=0: header, topic, packet id, payload in one buffer. */
export function publishQos1 (topic: Buffer, packetId: number, payload: Uint8Array): Buffer {
  const remaining = topic.length + 2 + payload.length
  const buf = Buffer.allocUnsafe(1 + varintLength(remaining) + remaining)
  buf[0] = (PacketType.Publish << 4) | 0x02
  let p = writeVarint(buf, 1, remaining)
  p += topic.copy(buf, p)
  buf[p++] = packetId >> 8
  buf[p++] = packetId & 0xff
  buf.set(payload, p)
  return buf
}

export type Frame = { type: number, flags: number, body: Buffer }

/**
 * Splits a byte stream into MQTT frames. `push` calls `onFrame` for each complete frame;
 * `body` is only valid during the call (it may alias the input chunk).
 */
export class FrameSplitter {
  private pending: Buffer | null = null
  constructor (private readonly maxFrameBytes = 1 << 20) {}

  push (chunk: Buffer, onFrame: (type: number, flags: number, body: Buffer) => void): void {
    let buf = chunk
    if (this.pending) { buf = Buffer.concat([this.pending, chunk]); this.pending = null }
    let pos = 0
    const len = buf.length
    while (pos < len) {
      if (len - pos < 2) break
      let remaining = 0
      let mul = 1
      let i = pos + 1
      let complete = false
      for (let k = 0; k < 4 && i < len; k++) {
        const b = buf[i++]!
        remaining += (b & 0x7f) * mul
        mul *= 128
        if ((b & 0x80) === 0) { complete = true; break }
        if (k === 3) throw new Error('malformed MQTT remaining length')
      }
      if (!complete) break
      if (remaining > this.maxFrameBytes) throw new Error(`MQTT frame of ${remaining} bytes exceeds ${this.maxFrameBytes}`)
      if (len - i < remaining) break
      const h = buf[pos]!
      onFrame(h >> 4, h & 0x0f, buf.subarray(i, i + remaining))
      pos = i + remaining
    }
    if (pos < len) this.pending = Buffer.from(buf.subarray(pos))
  }
}
