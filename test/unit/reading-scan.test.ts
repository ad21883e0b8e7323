/**
 * The one-pass reading scanner (protocol/reading-scan.ts) against the decoder it stands in
 * for (`decodeReading`): on every payload it takes, the same seq, boot and ts and the same
 * stored item bytes; it never takes a payload the decoder refuses. Payloads come from a
 * hand-written CBOR writer that varies what devices vary (head widths, float widths, field
 * order, uint64 timestamps, -0 as a float of every width) and adds what the scanner must
 * leave to the decoder (duplicate names, all-digit names, __proto__, nulls, non-ASCII text,
 * tags, indefinite lengths, trailing bytes), then from byte mutations and truncations of those.
 * Besides agreeing, both must store what was sent or refuse it: the generator knows where it
 * wrote -0 (stored as -0, never 0) and where it wrote what no reading may hold (a map key
 * that is not text, a name twice, invalid UTF-8), which both must refuse.
 */
import assert from 'node:assert/strict'
import test from 'node:test'
import { type BatchItem, decodeReading, decodeTrusted, encodeCbor, encodeItemFast, encodeItemSpan, scanReading, type Reading } from '../../protocol/index.ts'
import { mulberry32 } from '../../common/index.ts'

const MAX = 64 * 1024

/** What the last generated payload must give: refused (and why), or stored with -0 under these names. */
const expected = { refuse: '', negZero: [] as string[] }

/** A CBOR writer whose heads may be wider than needed (devices' encoders differ there). */
class Writer {
  readonly bytes: number[] = []
  constructor (private readonly r: () => number, private readonly wide: number) {}
  head (major: number, n: number): void {
    const m = major << 5
    const widen = this.r() < this.wide
    if (n < 24 && !widen) this.bytes.push(m | n)
    else if (n < 0x100 && !(widen && this.r() < 0.5)) this.bytes.push(m | 24, n)
    else if (n < 0x10000 && !(widen && this.r() < 0.5)) this.bytes.push(m | 25, n >> 8, n & 0xff)
    else if (n < 0x100000000 && !(widen && this.r() < 0.5)) this.bytes.push(m | 26, ...u32(n))
    else this.bytes.push(m | 27, ...u32(Math.floor(n / 0x100000000)), ...u32(n >>> 0))
  }

  text (s: string): void {
    const b = Buffer.from(s, 'utf8')
    this.head(3, b.length)
    this.bytes.push(...b)
  }

  /** Writes `v` (an integer head when 'auto' allows, else a float); returns whether it wrote the float -0. */
  number (v: number, float: 'auto' | 16 | 32 | 64): boolean {
    if (float === 'auto' && Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) {
      if (v >= 0) this.head(0, v)
      else this.head(1, -1 - v)
      return false
    }
    const negZero = Object.is(v, -0)
    if (float === 16 || (float === 'auto' && this.r() < 0.2)) {
      const h = toHalf(v)
      if (h !== null) { this.bytes.push(0xf9, h >> 8, h & 0xff); return negZero }
    }
    if (float === 32 || (float === 'auto' && this.r() < 0.3)) {
      const f = new DataView(new ArrayBuffer(4))
      f.setFloat32(0, v)
      if (f.getFloat32(0) === v || float === 32) { this.bytes.push(0xfa, ...new Uint8Array(f.buffer)); return negZero }
    }
    const d = new DataView(new ArrayBuffer(8))
    d.setFloat64(0, v)
    this.bytes.push(0xfb, ...new Uint8Array(d.buffer))
    return negZero
  }

  /** Text whose bytes are not valid UTF-8 (a lone continuation byte, an overlong form, a surrogate, a cut sequence). */
  badText (r: () => number): void {
    const bad = [[0xff], [0x80], [0xc3, 0x28], [0xc0, 0x80], [0xe0, 0x80, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82]][Math.floor(r() * 8)]!
    const b = [...Buffer.from(r() < 0.5 ? 'ok' : ''), ...bad]
    this.head(3, b.length)
    this.bytes.push(...b)
  }

  /** A map key that is not text: an integer, a float, a boolean, null or a byte string. */
  oddKey (r: () => number): void {
    const k = Math.floor(r() * 6)
    if (k === 0) this.head(0, Math.floor(r() * 30))
    else if (k === 1) this.head(1, Math.floor(r() * 30))
    else if (k === 2) this.number(0.5 + Math.floor(r() * 4), 64)
    else if (k === 3) this.bytes.push(r() < 0.5 ? 0xf4 : 0xf5)
    else if (k === 4) this.bytes.push(0xf6)
    else this.bytes.push(0x41, 0x61)
  }
}

function u32 (n: number): number[] { return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff] }

/** Every finite half-precision value and its bits (a value that is none gets no half). */
const HALVES = new Map<number, number>()
for (let h = 0xffff; h >= 0; h--) {
  const e = (h >> 10) & 0x1f
  const m = h & 0x3ff
  if (e === 31) continue
  const v = (e === 0 ? m * 2 ** -24 : (m + 1024) * 2 ** (e - 25)) * (h & 0x8000 ? -1 : 1)
  HALVES.set(v, h)
}
/** A Map takes -0 and 0 for one key, so -0 has its half (0x8000) here. */
function toHalf (v: number): number | null { return Object.is(v, -0) ? 0x8000 : HALVES.get(v) ?? null }

const NAMES = ['t', 'h', 'temperature_c', 'rssi', 'x'.repeat(23), 'y'.repeat(24), 'n'.repeat(64), 'a.b:c-d', 'v_9', 'ok']
const ODD_NAMES = ['12', '0', '__proto__', '__proto_', 'bad name', 'é', 'n'.repeat(65), '']
const NUMBERS = [0, 1, 23, 24, 255, 256, 65535, 65536, 0xffffffff, 0x100000000, 2 ** 40 + 7, Number.MAX_SAFE_INTEGER, -1, -24, -25, -256, -65537, -(2 ** 31) - 1, -0x100000001, Number.MIN_SAFE_INTEGER, 0.5, -0.5, 21.53, 1.5, 65504, 1e-300, -2.5e10, Math.PI, 2 ** -24, 100000.5, -0]
const TEXTS = ['', 'a', 'ok', 'x'.repeat(23), 'x'.repeat(24), 'x'.repeat(256), 'x'.repeat(257), 'é', '日本語']

/**
 * One payload: mostly the common shape (`odd` false: what the scanner should take unless the
 * decoder refuses it), sometimes with things only the decoder may judge.
 */
function payload (r: () => number, odd: boolean): Buffer {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!
  const w = new Writer(r, r() < 0.3 ? 0.3 : 0)
  const fields: Array<[string, () => void]> = []
  expected.refuse = ''
  expected.negZero = []
  const refuse = (why: string): void => { expected.refuse ||= why }
  const uintField = (): void => { if (r() < 0.1) w.bytes.push(0xf6); else w.head(0, pick([0, 1, 500, 70000, 1764232000123, Number.MAX_SAFE_INTEGER])) }
  if (r() < 0.9) fields.push(['seq', uintField])
  if (r() < 0.6) {
    fields.push(['boot', () => {
      const k = r()
      if (odd && k > 0.95) {
        w.badText(r)
        refuse('boot: invalid UTF-8')
      } else if (k < 0.4) w.head(0, pick([0, 3, 1764232000]))
      else if (k < 0.9) w.text(pick(odd ? ['b1', 'x'.repeat(64), 'x'.repeat(65), 'é'] : ['b1', 'boot-2026', 'x'.repeat(64)]))
      else w.bytes.push(0xf6)
    }])
  }
  if (r() < 0.6) fields.push(['ts', uintField])
  fields.push(['values', () => {
    const n = r() < 0.05 ? pick([0, 65]) : 1 + Math.floor(r() * 8)
    w.head(5, n)
    const used: string[] = []
    for (let i = 0; i < n; i++) {
      let name = odd && r() < 0.1 ? pick(ODD_NAMES) : r() < 0.5 ? `v${i}` : pick(NAMES)
      if (odd && r() < 0.05 && used.length) {
        name = pick(used)
        refuse(`values: ${name} twice`)
      } else if (used.includes(name)) {
        name = `v${i}`
      }
      used.push(name)
      const key = odd ? r() : 1
      if (key < 0.03) {
        w.oddKey(r)
        refuse('values: a key that is not text')
      } else if (key < 0.05) {
        w.badText(r)
        refuse('values: a name that is not UTF-8')
      } else {
        w.text(name)
      }
      const k = r()
      if (odd && k > 0.97) {
        w.badText(r)
        refuse(`values.${name}: invalid UTF-8`)
      } else if (k < 0.55) {
        if (w.number(pick(NUMBERS) * (r() < 0.7 ? 1 : r()), pick(['auto', 'auto', 'auto', 16, 32, 64] as const))) expected.negZero.push(name)
      } else if (k < 0.75) {
        w.bytes.push(r() < 0.5 ? 0xf4 : 0xf5)
      } else if (k < 0.93) {
        w.text(odd ? pick(TEXTS) : pick(TEXTS.slice(0, 6)))
      } else if (odd) {
        w.bytes.push(pick([0xf6, 0xf7, 0x40, 0x80, 0xa0, 0xc1, 0x00]))
      } else {
        w.bytes.push(0xf5)
      }
    }
  }])
  if (odd && r() < 0.1) fields.push([pick(['extra', 'seq', 'values']), () => w.head(0, 1)])
  if (odd && r() < 0.05) {
    fields.push(['', () => w.head(0, 1)]) // '': written as a key that is not text
    refuse('payload: a key that is not text')
  }
  // field order varies (devices do not sort keys)
  for (let i = fields.length - 1; i > 0; i--) { const j = Math.floor(r() * (i + 1)); [fields[i], fields[j]] = [fields[j]!, fields[i]!] }
  w.head(5, fields.length)
  for (const [name, write] of fields) {
    if (name === '') w.oddKey(r); else w.text(name)
    write()
  }
  const out = Buffer.from(w.bytes)
  if (odd && r() < 0.1) return Buffer.concat([out, Buffer.from([0x00])])
  if (odd && r() < 0.1) return Buffer.concat([Buffer.from([0xbf]), out.subarray(1), Buffer.from([0xff])])
  return out
}

function mutate (b: Buffer, r: () => number): Buffer {
  const c = Buffer.from(b)
  const k = r()
  if (k < 0.4) c[Math.floor(r() * c.length)] = Math.floor(r() * 256)
  else if (k < 0.7) return c.subarray(0, Math.floor(r() * c.length))
  else c[Math.floor(r() * c.length)]! ^= 1 << Math.floor(r() * 8)
  return c
}

const RX = 1764232999000

/** The stored item the decoder's path gives, or the decoder's refusal. */
function slowItem (b: Buffer): { reading: Reading, item: Buffer } | { error: string } {
  try {
    const reading = decodeReading(b, MAX)
    return { reading, item: Buffer.from(encodeItemFast(3, 41, 'dev-1', reading.seq, reading.boot, reading.ts, RX, reading.values)) }
  } catch (err) {
    return { error: (err as Error).message }
  }
}

function check (b: Buffer, what: string): boolean {
  const fast = scanReading(b)
  if (fast === null) return false
  const slow = slowItem(b)
  if ('error' in slow) assert.fail(`${what}: the scanner took a payload the decoder refuses (${slow.error}): ${b.toString('hex')}`)
  assert.deepEqual([fast.seq, fast.boot, fast.ts], [slow.reading.seq, slow.reading.boot, slow.reading.ts], `${what}: ${b.toString('hex')}`)
  const item = Buffer.from(encodeItemSpan(3, 41, 'dev-1', fast.seq, fast.boot, fast.ts, RX, fast))
  if (!item.equals(slow.item)) assert.fail(`${what}: item bytes differ for ${b.toString('hex')}\nscan    ${item.toString('hex')}\ndecoder ${slow.item.toString('hex')}`)
  return true
}

test('the scanner agrees with the decoder on 30,000 generated payloads and 30,000 mutations of them', () => {
  const r = mulberry32(20261207)
  let taken = 0
  let common = 0
  let mutatedTaken = 0
  let refused = 0
  let negZeros = 0
  for (let i = 0; i < 30_000; i++) {
    const odd = r() < 0.35
    const b = payload(r, odd)
    const took = check(b, `payload ${i}`)
    const slow = slowItem(b)
    if (expected.refuse !== '') {
      refused++
      if (!('error' in slow)) assert.fail(`payload ${i} (${expected.refuse}) was taken as ${JSON.stringify(slow.reading)}: ${b.toString('hex')}`)
    } else if (!('error' in slow)) {
      const stored = (decodeTrusted(slow.item) as BatchItem)[7]
      for (const name of expected.negZero) {
        negZeros++
        assert.ok(Object.is(stored[name], -0), `payload ${i}: ${name} was sent as -0 and stored as ${stored[name]}: ${b.toString('hex')}`)
      }
    }
    // of the common shape, the scanner must take every payload the decoder accepts
    if (!odd && !('error' in slow)) {
      common++
      if (took) taken++
      else assert.fail(`payload ${i}: the scanner left a common-shape reading to the decoder: ${b.toString('hex')}`)
    }
    if (check(mutate(b, r), `mutation ${i}`)) mutatedTaken++
  }
  assert.ok(common > 15_000 && taken === common, `${taken} of ${common} common-shape payloads taken: the generator is off`)
  assert.ok(mutatedTaken > 100, `the scanner took only ${mutatedTaken} mutated payloads: the comparison did not reach it`)
  assert.ok(refused > 500 && negZeros > 500, `${refused} payloads that must be refused, ${negZeros} values of -0 stored: the generator is off`)
})

test('the common shapes take the scanner: cbor-x encoded readings, uint64 timestamps, floats of every width', () => {
  const cases: Array<[string, Buffer]> = [
    ['cbor-x', encodeCbor({ seq: 7, boot: 'b1', ts: BigInt(1764232000123), values: { t: 21.5, ok: true, n: -3, s: 'dry' } })],
    ['values only', encodeCbor({ values: { t: 1 } })],
    ['half', Buffer.from('a26676616c756573a16174f93e00637365710a', 'hex')],
    ['single', Buffer.from('a16676616c756573a16174fa41ac0000', 'hex')],
    ['double 1.0 becomes int', Buffer.from('a16676616c756573a16174fb3ff0000000000000', 'hex')],
    ['uint64 ts', Buffer.from('a26274731b0000019ae6d8b07b6676616c756573a1617401', 'hex')]
  ]
  for (const [what, b] of cases) assert.ok(check(b, what), `${what}: expected the scanner to take ${b.toString('hex')}`)
})

test('what only the decoder may judge is left to it', () => {
  const cases: Array<[string, unknown]> = [
    ['all-digit name (object order)', { values: { 1: 1, a: 2 } }],
    ['__proto__', Buffer.from('a16676616c756573a1695f5f70726f746f5f5f01', 'hex')],
    ['null value', { values: { a: null } }],
    ['non-ASCII text', { values: { a: 'é' } }],
    ['unknown field', { seq: 1, extra: 1, values: { a: 1 } }],
    ['no values', { seq: 1 }],
    ['empty values', { values: {} }],
    ['array value', { values: { a: [1] } }],
    ['NaN', { values: { a: NaN } }],
    ['Infinity', { values: { a: Infinity } }],
    ['seq above 2^53', Buffer.from('a263736571' + '1b0020000000000000' + '6676616c756573a1616101', 'hex')],
    ['duplicate name', Buffer.from('a16676616c756573a2616101616102', 'hex')],
    ['duplicate field', Buffer.from('a2637365710163736571' + '02', 'hex')],
    ['trailing byte', Buffer.concat([encodeCbor({ values: { a: 1 } }), Buffer.from([0])])],
    ['JSON', Buffer.from('{"values":{"a":1}}')],
    ['tag', Buffer.from('a16676616c756573a16161c101', 'hex')]
  ]
  for (const [what, v] of cases) {
    const b = Buffer.isBuffer(v) ? v : encodeCbor(v)
    assert.equal(scanReading(b), null, `${what}: the scanner must step aside for ${b.toString('hex')}`)
  }
})
