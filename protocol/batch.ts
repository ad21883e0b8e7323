/**
 * Upstream protocol v1 (DESIGN.md section 6): the batch request body and the per-item
 * response, as standard CBOR.
 *
 * An item is the 8-element array `[p, s, device, seq, boot, ts, rx, values]`. The gateway
 * encodes each item once, at intake, and stores those bytes; a batch body is framed around
 * the stored bytes without decoding them (`encodeBatchRaw`).
 */
import { cborHead, decodeUntrusted, encodeCbor, wireUint } from './cbor.ts'
import { AckCode, normalizeCode, PROTOCOL_VERSION } from './codes.ts'
import { DecodeError, ValidationError } from './errors.ts'
import { type Boot, type Values, validateValues, READING_LIMITS } from './reading.ts'
import { isValidDeviceId } from './topics.ts'
import { encodeItemFast } from './item-encoder.ts'

export type BatchItem = [p: number, s: number, device: string, seq: number | null, boot: Boot | null, ts: number | null, rx: number, values: Values]
export type Floor = [p: number, s: number]
export type EvictedRange = [p: number, fromSeq: number, toSeq: number]

export type BatchEnvelope = {
  v: typeof PROTOCOL_VERSION
  gateway: string
  epoch: string
  batch: string
  floors: Floor[]
  evicted?: EvictedRange[]
}
export type BatchRequest = BatchEnvelope & { items: BatchItem[] }
/** A decoded request whose items are not validated yet (each may be rejected on its own). */
export type RawBatchRequest = BatchEnvelope & { items: unknown[] }

export type ItemResult = [p: number, s: number, code: AckCode] | [p: number, s: number, code: AckCode, reason: string]
export type BatchResponse = { v: typeof PROTOCOL_VERSION, batch: string, results: ItemResult[] }

export const BATCH_LIMITS = { maxDepth: 8 } as const

/** The wire bytes of one item (protocol/item-encoder.ts; the same bytes as `encodeItemGeneric`). */
export function encodeItem (item: BatchItem): Buffer {
  return encodeItemFast(item[0], item[1], item[2], item[3], item[4], item[5], item[6], item[7])
}

/** The item through cbor-x's general encoder: the reference the fast encoder is tested against. */
export function encodeItemGeneric (item: BatchItem): Buffer {
  const [p, s, device, seq, boot, ts, rx, values] = item
  return encodeCbor([p, wireUint(s), device, seq === null ? null : wireUint(seq),
    typeof boot === 'number' ? wireUint(boot) : boot, ts === null ? null : wireUint(ts), wireUint(rx), values])
}

/** Frames pre-encoded items (each one complete CBOR array) into a request body. */
export function encodeBatchRaw (env: Omit<BatchEnvelope, 'v'>, rawItems: readonly Uint8Array[]): Buffer {
  const parts: Uint8Array[] = []
  const pairs = env.evicted && env.evicted.length > 0 ? 7 : 6
  parts.push(cborHead(5, pairs))
  const field = (k: string, v: unknown): void => { parts.push(encodeCbor(k), encodeCbor(v)) }
  field('v', PROTOCOL_VERSION)
  field('gateway', env.gateway)
  field('epoch', env.epoch)
  field('batch', env.batch)
  parts.push(encodeCbor('items'), cborHead(4, rawItems.length))
  for (const r of rawItems) parts.push(r)
  field('floors', env.floors.map(([p, s]) => [p, wireUint(s)]))
  if (pairs === 7) field('evicted', env.evicted!.map(([p, a, b]) => [p, wireUint(a), wireUint(b)]))
  return Buffer.concat(parts)
}

export function encodeBatch (req: Omit<BatchRequest, 'v'>): Buffer {
  return encodeBatchRaw(req, req.items.map(encodeItem))
}

/** JSON for error messages that never throws (BigInt, cycles). */
export function describe (v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`
  try { return JSON.stringify(v) ?? typeof v } catch { return typeof v }
}

function isUint (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/** A text field of the envelope, 1..max characters. */
export function envelopeText (obj: Record<string, unknown>, k: string, max = 256): string {
  const v = obj[k]
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw new ValidationError(k, `must be text of 1..${max} characters`)
  return v
}

export function uintTuples (v: unknown, field: string, width: number): number[][] {
  if (!Array.isArray(v)) throw new ValidationError(field, 'must be an array')
  return v.map((t, i) => {
    if (!Array.isArray(t) || t.length !== width || !t.every(isUint)) throw new ValidationError(`${field}[${i}]`, `must be an array of ${width} unsigned integers`)
    return t as number[]
  })
}

/**
 * Decodes a request body. Envelope errors throw (the whole batch is unreadable: HTTP 400);
 * items are returned unvalidated for `validateItem`, so one bad item is rejected alone.
 */
export function decodeBatch (body: Uint8Array, opts: { maxItems: number }): RawBatchRequest {
  const raw = decodeUntrusted(body, { maxDepth: BATCH_LIMITS.maxDepth, maxItems: opts.maxItems * (10 + 2 * READING_LIMITS.maxValues) + 64 })
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || raw instanceof Uint8Array) throw new DecodeError('batch must be a CBOR map')
  const obj = raw as Record<string, unknown>
  if (obj.v !== PROTOCOL_VERSION) throw new ValidationError('v', `unsupported protocol version ${describe(obj.v)}; this ingest speaks ${PROTOCOL_VERSION}`)
  const gateway = envelopeText(obj, 'gateway', 64)
  const epoch = envelopeText(obj, 'epoch', 64)
  const batch = envelopeText(obj, 'batch', 128)
  if (!Array.isArray(obj.items)) throw new ValidationError('items', 'must be an array')
  if (obj.items.length > opts.maxItems) throw new ValidationError('items', `${obj.items.length} items exceeds the limit of ${opts.maxItems}`)
  const floors = uintTuples(obj.floors ?? [], 'floors', 2) as Floor[]
  const evicted = obj.evicted === undefined ? undefined : uintTuples(obj.evicted, 'evicted', 3) as EvictedRange[]
  for (const [i, [, a, b]] of (evicted ?? []).entries()) if (a > b) throw new ValidationError(`evicted[${i}]`, 'fromSeq above toSeq')
  return { v: PROTOCOL_VERSION, gateway, epoch, batch, items: obj.items, floors, ...(evicted ? { evicted } : {}) }
}

/** The (p, s) of an item if it has them, so even an invalid item can be answered. */
export function itemKey (item: unknown): Floor | null {
  if (!Array.isArray(item) || !isUint(item[0]) || !isUint(item[1])) return null
  return [item[0], item[1]]
}

export function validateItem (item: unknown): BatchItem {
  if (!Array.isArray(item) || item.length !== 8) throw new ValidationError('item', 'must be an array of 8 elements')
  const [p, s, device, seq, boot, ts, rx, values] = item as unknown[]
  if (!isUint(p) || p > 0xffff) throw new ValidationError('p', 'must be an unsigned integer below 65536')
  if (!isUint(s)) throw new ValidationError('s', 'must be an unsigned integer below 2^53')
  if (!isValidDeviceId(device)) throw new ValidationError('device', 'must match ^[A-Za-z0-9._-]{1,64}$')
  if (seq !== null && !isUint(seq)) throw new ValidationError('seq', 'must be null or an unsigned integer below 2^53')
  if (boot !== null && !isUint(boot) && !(typeof boot === 'string' && Buffer.byteLength(boot) <= READING_LIMITS.maxBootBytes)) {
    throw new ValidationError('boot', `must be null, an unsigned integer or text of at most ${READING_LIMITS.maxBootBytes} bytes`)
  }
  if (ts !== null && !isUint(ts)) throw new ValidationError('ts', 'must be null or an unsigned integer')
  if (!isUint(rx)) throw new ValidationError('rx', 'must be an unsigned integer')
  let obj: unknown = values
  if (values instanceof Map) {
    // CBOR tag 259 decodes as a Map whose keys may be anything
    for (const k of values.keys()) if (typeof k !== 'string') throw new ValidationError('values', 'names must be text')
    obj = Object.fromEntries(values)
  }
  const vals = validateValues(obj, 'values')
  return [p, s, device, seq as number | null, boot as Boot | null, ts as number | null, rx, vals]
}

export function encodeResponse (res: Omit<BatchResponse, 'v'>): Buffer {
  return encodeCbor({ v: PROTOCOL_VERSION, batch: res.batch, results: res.results.map((r) => { const c = r.slice() as unknown[]; c[1] = wireUint(r[1]); return c }) })
}

/**
 * Decodes a response. Entries that are not `[p, s, code, reason?]` are skipped (those
 * items then count as missing, i.e. retry); unknown codes become retry.
 */
export function decodeResponse (body: Uint8Array): BatchResponse {
  const raw = decodeUntrusted(body, { maxDepth: 4 })
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new DecodeError('response must be a CBOR map')
  const obj = raw as Record<string, unknown>
  if (obj.v !== PROTOCOL_VERSION) throw new ValidationError('v', `unsupported response version ${describe(obj.v)}`)
  if (!Array.isArray(obj.results)) throw new ValidationError('results', 'must be an array')
  const results: ItemResult[] = []
  for (const r of obj.results) {
    if (!Array.isArray(r) || r.length < 3 || !isUint(r[0]) || !isUint(r[1])) continue
    const code = normalizeCode(r[2])
    results.push(typeof r[3] === 'string' ? [r[0], r[1], code, r[3]] : [r[0], r[1], code])
  }
  return { v: PROTOCOL_VERSION, batch: typeof obj.batch === 'string' ? obj.batch : '', results }
}

/** Receipt published to `devices/{id}/receipts` after an acknowledged batch. */
export type Receipt = { boot: Boot | null, upTo: number | null, rejected: number[] }

export function encodeReceipt (r: Receipt): Buffer {
  return encodeCbor({ boot: typeof r.boot === 'number' ? wireUint(r.boot) : r.boot, upTo: r.upTo === null ? null : wireUint(r.upTo), rejected: r.rejected.map(wireUint) })
}

export function decodeReceipt (buf: Uint8Array): Receipt {
  const raw = decodeUntrusted(buf, { maxDepth: 3 }) as Record<string, unknown> | null
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || raw instanceof Uint8Array) throw new DecodeError('receipt must be a CBOR map')
  const boot = raw.boot ?? null
  if (boot !== null && !isUint(boot) && !(typeof boot === 'string' && Buffer.byteLength(boot) <= READING_LIMITS.maxBootBytes)) {
    throw new ValidationError('boot', 'must be null, an unsigned integer or text of at most 64 bytes')
  }
  const upTo = raw.upTo ?? null
  if (upTo !== null && !isUint(upTo)) throw new ValidationError('upTo', 'must be an unsigned integer or null')
  const rejected = Array.isArray(raw.rejected) ? raw.rejected.filter(isUint) : []
  return { boot: boot as Boot | null, upTo, rejected }
}
