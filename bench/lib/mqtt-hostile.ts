/**
 * Hostile MQTT 3.1.1 traffic from a seeded generator, for test/faults/hostile-clients.test.ts
 * and bench/fuzz.ts: packet encoders that build what a fuzzer sends (valid,
 * valid-but-abusive and malformed), and `fuzzSession`, which turns a PRNG into one
 * connection's script: the bytes to write and when to hang up. Same seed, same traffic.
 *
 * Load-generator code, not product code: the encoders take whatever they are given
 * (oversize lengths, reserved flags) because producing bad packets is the point.
 */
export type Rng = () => number

function varint (n: number): Buffer {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Buffer.from(out)
}

const str = (s: string | Buffer): Buffer => {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s
  const len = Buffer.alloc(2)
  len.writeUInt16BE(b.length & 0xffff)
  return Buffer.concat([len, b])
}
const u16 = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(n & 0xffff); return b }
const frame = (first: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([first]), varint(body.length), body])

export type Will = { topic: string, payload: Buffer, qos?: number, retain?: boolean }

export function connect (o: { clientId: string, clean?: boolean, keepaliveS?: number, will?: Will, username?: string, password?: string }): Buffer {
  let flags = o.clean === false ? 0 : 0x02
  if (o.will) flags |= 0x04 | ((o.will.qos ?? 0) << 3) | (o.will.retain ? 0x20 : 0)
  if (o.username !== undefined) flags |= 0x80
  if (o.password !== undefined) flags |= 0x40
  const parts = [str('MQTT'), Buffer.from([4, flags]), u16(o.keepaliveS ?? 60), str(o.clientId)]
  if (o.will) parts.push(str(o.will.topic), str(o.will.payload))
  if (o.username !== undefined) parts.push(str(o.username))
  if (o.password !== undefined) parts.push(str(o.password))
  return frame(0x10, Buffer.concat(parts))
}

export function publish (o: { topic: string, payload: Buffer, qos?: number, retain?: boolean, id?: number, dup?: boolean }): Buffer {
  const qos = o.qos ?? 0
  const first = 0x30 | (o.dup ? 0x08 : 0) | (qos << 1) | (o.retain ? 1 : 0)
  const parts = [str(o.topic)]
  if (qos > 0) parts.push(u16(o.id ?? 1))
  parts.push(o.payload)
  return frame(first, Buffer.concat(parts))
}

export function subscribe (id: number, subs: Array<{ topic: string, qos: number }>): Buffer {
  return frame(0x82, Buffer.concat([u16(id), ...subs.flatMap((s) => [str(s.topic), Buffer.from([s.qos])])]))
}

export function unsubscribe (id: number, topics: string[]): Buffer {
  return frame(0xa2, Buffer.concat([u16(id), ...topics.map((t) => str(t))]))
}

export const puback = (id: number): Buffer => frame(0x40, u16(id))
export const pubrec = (id: number): Buffer => frame(0x50, u16(id))
export const pubrel = (id: number): Buffer => frame(0x62, u16(id))
export const pingreq = (): Buffer => Buffer.from([0xc0, 0])
export const disconnect = (): Buffer => Buffer.from([0xe0, 0])
/** A PUBLISH header declaring the largest remaining length MQTT allows (256 MiB), then a few bytes. */
export const hugeLength = (): Buffer => Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f, 0, 3, 0x61, 0x2f, 0x62])
/** A remaining length of five varint bytes: malformed [MQTT-2.2.3]. */
export const badVarint = (): Buffer => Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])

export function randomBytes (rng: Rng, n: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = Math.floor(rng() * 256)
  return b
}

/** Flips a few bytes of a valid packet (not the first: that keeps most of them parseable). */
export function mutate (rng: Rng, pkt: Buffer): Buffer {
  const out = Buffer.from(pkt)
  const flips = 1 + Math.floor(rng() * 3)
  for (let i = 0; i < flips && out.length > 1; i++) out[1 + Math.floor(rng() * (out.length - 1))] = Math.floor(rng() * 256)
  return out
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!
const int = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1))

export const FUZZ_KINDS = [
  'retain-flood', 'subscribe-hash', 'garbage', 'huge-length', 'qos2-flood', 'subscription-flood',
  'long-topic', 'will', 'persistent-subscriber', 'mutated', 'long-client-id', 'publish-flood'
] as const
export type FuzzKind = (typeof FUZZ_KINDS)[number]

/**
 * One connection's script: `bytes` written at once, `after` (if any) once the first bytes
 * come back (the CONNACK: Aedes closes a client that sends more than 42 packets before it),
 * then hang up `hangUpMs` after connecting (abruptly: no DISCONNECT unless it is in the bytes).
 */
export type FuzzSession = { kind: FuzzKind, bytes: Buffer, after?: Buffer, hangUpMs: number }

/**
 * What the fuzzer did, and more: connect, publish retained messages on many
 * distinct topics, subscribe to `#`, hang up within 50 ms; plus random bytes, huge and
 * malformed lengths, QoS 2 floods without PUBREL, subscription floods, long topics, wills,
 * persistent subscribers that never come back, byte-flipped packets, long client ids.
 * `n` numbers the connection (client ids and topics derive from it).
 */
export function fuzzSession (rng: Rng, n: number, kinds: readonly FuzzKind[] = FUZZ_KINDS): FuzzSession {
  const kind = pick(rng, kinds)
  const id = `fz${n}`
  const hangUpMs = int(rng, 0, 50)
  const hello = connect({ clientId: id, keepaliveS: 30 })
  const payload = (max: number): Buffer => randomBytes(rng, int(rng, 1, max))
  const topic = (): string => `fz/${int(rng, 0, 4999)}/${pick(rng, ['a', 'b', 'temp', 'x/y'])}`
  switch (kind) {
    case 'retain-flood': {
      const ps = Array.from({ length: int(rng, 5, 40) }, (_, i) => publish({ topic: topic(), payload: payload(2048), qos: int(rng, 0, 1), retain: true, id: i + 1 }))
      return { kind, bytes: hello, after: Buffer.concat([...ps, subscribe(1, [{ topic: '#', qos: int(rng, 0, 2) }])]), hangUpMs }
    }
    case 'subscribe-hash':
      return { kind, bytes: Buffer.concat([hello, subscribe(1, [{ topic: pick(rng, ['#', '+/#', 'fz/#', '$SYS/#']), qos: int(rng, 0, 2) }])]), hangUpMs }
    case 'garbage':
      return { kind, bytes: rng() < 0.5 ? randomBytes(rng, int(rng, 1, 4096)) : Buffer.concat([hello, randomBytes(rng, int(rng, 1, 512))]), hangUpMs }
    case 'huge-length':
      return { kind, bytes: Buffer.concat([hello, rng() < 0.5 ? hugeLength() : badVarint()]), hangUpMs }
    case 'qos2-flood': {
      const ps = Array.from({ length: int(rng, 50, 300) }, (_, i) => publish({ topic: topic(), payload: payload(256), qos: 2, id: i + 1 }))
      return { kind, bytes: hello, after: Buffer.concat(ps), hangUpMs: hangUpMs + 50 }
    }
    case 'subscription-flood': {
      const subs = Array.from({ length: int(rng, 50, 400) }, (_, i) => ({ topic: `fz/${i}/${int(rng, 0, 1e6)}/#`, qos: int(rng, 0, 2) }))
      return { kind, bytes: Buffer.concat([hello, subscribe(1, subs)]), hangUpMs }
    }
    case 'long-topic': {
      const t = rng() < 0.5 ? 'fz/' + 'x'.repeat(int(rng, 600, 30_000)) : Array.from({ length: int(rng, 20, 99) }, () => 'l').join('/')
      const bytes = rng() < 0.5 ? publish({ topic: t, payload: payload(64), qos: 1, retain: rng() < 0.5, id: 1 }) : subscribe(1, [{ topic: t, qos: 1 }])
      return { kind, bytes: Buffer.concat([hello, bytes]), hangUpMs }
    }
    case 'will': {
      const will = { topic: rng() < 0.8 ? topic() : 'fz/' + 'w'.repeat(2000), payload: payload(rng() < 0.5 ? 512 : 20_000), qos: int(rng, 0, 2), retain: rng() < 0.5 }
      return { kind, bytes: connect({ clientId: id, keepaliveS: 30, will }), hangUpMs }
    }
    case 'persistent-subscriber':
      return { kind, bytes: Buffer.concat([connect({ clientId: `fzp${int(rng, 0, 20_000)}`, clean: false, keepaliveS: 30 }), subscribe(1, [{ topic: pick(rng, ['#', 'fz/#']), qos: int(rng, 1, 2) }])]), hangUpMs }
    case 'mutated': {
      const valid = pick(rng, [hello, publish({ topic: topic(), payload: payload(128), qos: 1, retain: true, id: 7 }), subscribe(3, [{ topic: '#', qos: 1 }])])
      return { kind, bytes: Buffer.concat([hello, mutate(rng, valid), mutate(rng, valid)]), hangUpMs }
    }
    case 'long-client-id':
      return { kind, bytes: connect({ clientId: 'c'.repeat(int(rng, 65, 5000)), keepaliveS: 30 }), hangUpMs }
    case 'publish-flood': {
      const ps = Array.from({ length: int(rng, 100, 500) }, (_, i) => publish({ topic: topic(), payload: payload(512), qos: int(rng, 0, 1), id: (i % 65535) + 1 }))
      return { kind, bytes: hello, after: Buffer.concat(ps), hangUpMs }
    }
  }
}
