/**
 * Upstream protocol v2 (docs/protocol-v2.md): the same batch as v1, columnar. Still one
 * standard CBOR map that any RFC 8949 decoder reads; lossless: decoding gives back exactly
 * the v1 items `[p, s, device, seq, boot, ts, rx, values]` (floats bit for bit, -0 kept,
 * value names in their original order).
 *
 *   v: 2, gateway, epoch, batch, floors, evicted?   as in v1
 *   n        number of items
 *   p, s     runs, flat: [p, count, ...] and [firstS, count, ...] (each run s, s+1, ...)
 *   dev      device ids, first-appearance order;  di: device index per item
 *   boot     per device, its boot at its first item;  bootAt: flat [item, boot, ...] changes
 *   seq      per item: null, or seq minus the previous seq of the same device in this batch;
 *            a device's first seq minus the first seq of the device before it (0 at first)
 *   rx       per item: rx minus the previous rx (0 at first)
 *   ts       per item: null, or (ts - rx) minus the previous (ts - rx) of the same device in
 *            this batch (for its first, of the device before it; 0 at first): a device
 *            clock's offset from the gateway's barely moves;
 *   tsRx     instead of ts when such a difference would leave the safe integer range
 *            (|x| >= 2^53): per item null or ts - rx
 *   names    value names;  shapes: [[name index, ...], ...] the distinct name lists, in map order
 *   devShape per device, the shape of its first item;  shapeAt: flat [item, shape, ...] changes
 *   cols     one per name, over the items that carry it, in item order:
 *              [0, bytes]          booleans, bit i (LSB first) of byte i >> 3
 *              [1, k, d, ...]      numbers m / 10^k; d = m minus the previous m of the same
 *                                  device in this column (for its first, the first m of
 *                                  the device before it; 0 at first); a value the scale
 *                                  cannot hold (-0, 1/3...) is written [x] with x as in kind 2
 *                                  and leaves the device's previous m as it was
 *              [2, x, ...]         anything: integer, float16/32/64 (shortest exact), text,
 *                                  boolean, or [k, m] for m / 10^k
 *
 * m / 10^k is the float64 nearest to the decimal fraction: m and 10^k (k <= 22) are exact
 * doubles and IEEE division rounds correctly, so every language gets the same bits. The
 * encoder uses a column's scale k only when every value round-trips through it.
 *
 * The response is `{ v: 2, batch, r: [p, s, count, code, ...], why: [p, s, reason, ...] }`:
 * runs of consecutive seqs with one code, and the reasons of rejected items.
 */
import { CborWriter } from './cbor-writer.ts'
import { decodeUntrusted } from './cbor.ts'
import { AckCode, normalizeCode } from './codes.ts'
import { DecodeError, ValidationError } from './errors.ts'
import { describe, type BatchResponse, type ItemResult } from './batch.ts'
import { PROTOCOL_V2 } from './batch-v2-encode.ts'

export { encodeBatchV2, PROTOCOL_V2 } from './batch-v2-encode.ts'
export { decodeBatchV2 } from './batch-v2-decode.ts'
export { decimalScale, decimalValue } from './decimal.ts'
/** Response headers by which an ingest names the protocol versions and body encodings it takes. */
export const PROTOCOLS_HEADER = 'ingest-protocols'
export const ENCODINGS_HEADER = 'ingest-encodings'

const bad = (field: string, msg: string): never => { throw new ValidationError(field, msg) }
const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0

export function encodeResponseV2 (res: Omit<BatchResponse, 'v'>): Buffer {
  const r: number[] = []
  const why: ItemResult[] = []
  for (const x of res.results) {
    const last = r.length - 4
    if (last >= 0 && r[last] === x[0] && r[last + 3] === x[2] && r[last + 1]! + r[last + 2]! === x[1]) r[last + 2]!++
    else r.push(x[0], x[1], 1, x[2])
    if (x[3] !== undefined) why.push(x)
  }
  const w = new CborWriter(64 + r.length * 3)
  w.map(4).text('v').int(PROTOCOL_V2).text('batch').text(res.batch)
  w.text('r').array(r.length)
  for (const x of r) w.int(x)
  w.text('why').array(why.length * 3)
  for (const x of why) w.int(x[0]).int(x[1]).text(x[3]!)
  return w.finish()
}

/** Expands a v2 response into per-item results (malformed runs are skipped: those items count as retry). */
export function decodeResponseV2 (body: Uint8Array): BatchResponse {
  const raw = decodeUntrusted(body, { maxDepth: 3 })
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new DecodeError('response must be a CBOR map')
  const obj = raw as Record<string, unknown>
  if (obj.v !== PROTOCOL_V2) bad('v', `unsupported response version ${describe(obj.v)}`)
  if (!Array.isArray(obj.r)) return bad('r', 'must be an array')
  const reasons = new Map<string, string>()
  const why = Array.isArray(obj.why) ? obj.why : []
  for (let i = 0; i + 2 < why.length; i += 3) if (typeof why[i + 2] === 'string') reasons.set(`${why[i]}:${why[i + 1]}`, why[i + 2] as string)
  const results: ItemResult[] = []
  const r = obj.r
  for (let i = 0; i + 3 < r.length; i += 4) {
    const [p, s, count, code] = [r[i], r[i + 1], r[i + 2], r[i + 3]]
    if (!isUint(p) || !isUint(s) || !isUint(count) || count > 1_000_000) continue
    const c: AckCode = normalizeCode(code)
    for (let j = 0; j < count; j++) {
      const reason = reasons.get(`${p}:${s + j}`)
      results.push(reason === undefined ? [p, s + j, c] : [p, s + j, c, reason])
    }
  }
  return { v: 1, batch: typeof obj.batch === 'string' ? obj.batch : '', results }
}
