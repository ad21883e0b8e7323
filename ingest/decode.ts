/**
 * Body -> validated batch, for either transport. The size limit is enforced while an HTTP
 * body streams in (server.ts) and again here after decompression (zlib's maxOutputLength
 * stops a gzip bomb at the limit), so a request never holds more than 2 x maxBodyBytes.
 * A failure is a `BatchRefusal` (refusal.ts), which each front answers in its own way.
 *
 * An item whose p and s are unsigned integers but which is otherwise invalid is answered
 * on its own (code 3 with the reason). An item without a usable [p, s] cannot be answered
 * at all, so the whole batch is refused `unreadable` (400) naming `items[i]`: the gateway
 * bisects the batch down to that item and dead-letters it (docs/design.md section 6),
 * which is where it belongs.
 */
import { promisify } from 'node:util'
import { brotliDecompress, gunzip, inflate, inflateRaw } from 'node:zlib'
import {
  AckCode, DecodeError, ValidationError, decodeBatch, decodeBatchV2, itemKey, validateItem,
  type BatchItem, type ItemResult, type RawBatchRequest
} from '../protocol/index.ts'
import { BatchRefusal } from './refusal.ts'

const decompressors = {
  gzip: promisify(gunzip),
  'x-gzip': promisify(gunzip),
  br: promisify(brotliDecompress),
  // HTTP's deflate is the zlib format; some clients send raw deflate, so that is tried second
  deflate: promisify(inflate),
  'deflate-raw': promisify(inflateRaw)
} as const

const tooLarge = (what: string, max: number): BatchRefusal =>
  new BatchRefusal('too-large', 'body_too_large', `${what} exceeds maxBodyBytes ${max}`, { field: 'body' })

/** The body encodings `decodeContent` takes: advertised to gateways (the HTTP header ingest-encodings, the MQTT user property of that name). */
export const ACCEPTED_ENCODINGS = ['identity', 'gzip', 'deflate', 'br'] as const

/** Decompresses per content-encoding (identity, gzip, deflate, br), at most maxBytes of output. */
export async function decodeContent (body: Buffer, encoding: string | undefined, maxBytes: number): Promise<Buffer> {
  const enc = (encoding ?? 'identity').trim().toLowerCase()
  if (enc === 'identity' || enc === '') return body
  const fn = Object.hasOwn(decompressors, enc) ? decompressors[enc as keyof typeof decompressors] : undefined
  if (!fn) throw new BatchRefusal('unsupported', 'unsupported_encoding', `content-encoding ${JSON.stringify(enc.slice(0, 40))} not supported (identity, gzip, deflate or br)`, { field: 'content-encoding' })
  try {
    return await fn(body, { maxOutputLength: maxBytes })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge('decompressed body', maxBytes)
    if (enc === 'deflate') return await decodeContent(body, 'deflate-raw', maxBytes)
    throw new BatchRefusal('unreadable', `bad_${enc === 'x-gzip' ? 'gzip' : enc.replace('-', '_')}`, `body is not valid ${enc}: ${(err as Error).message}`, { field: 'body', cause: err })
  }
}

/** Envelope errors as refusals: too many items is too-large (split), anything else unreadable (bisect). */
export function decodeEnvelope (body: Buffer, maxItems: number): RawBatchRequest {
  return refusals(() => decodeBatch(body, { maxItems }))
}

/** The same for a protocol v2 (columnar) body: items come out in the v1 shape. */
export function decodeEnvelopeV2 (body: Buffer, maxItems: number): RawBatchRequest {
  return refusals(() => decodeBatchV2(body, { maxItems }))
}

function refusals (decode: () => RawBatchRequest): RawBatchRequest {
  try {
    return decode()
  } catch (err) {
    // protocol/ has no typed limit error yet: it reports these two limits by message.
    if (err instanceof ValidationError && err.field === 'items' && err.message.includes('exceeds the limit')) {
      throw new BatchRefusal('too-large', 'too_many_items', err.message, { field: 'items', cause: err })
    }
    if (err instanceof DecodeError && err.message.startsWith('CBOR has more than')) {
      throw new BatchRefusal('too-large', 'too_many_items', `batch too large: ${err.message}`, { field: 'items', cause: err })
    }
    if (err instanceof ValidationError) throw new BatchRefusal('unreadable', 'invalid_batch', err.message, { field: err.field, cause: err })
    if (err instanceof DecodeError) throw new BatchRefusal('unreadable', 'malformed_cbor', err.message, { field: 'body', cause: err })
    throw new BatchRefusal('unreadable', 'malformed_cbor', `cannot decode the body: ${(err as Error).message}`, { field: 'body', cause: err })
  }
}

export type ValidatedItems = {
  /** One slot per request item, in order; filled now for rejected items, later for the rest. */
  results: (ItemResult | undefined)[]
  /** Valid items with their index in the request. */
  valid: { index: number, item: BatchItem }[]
  rejected: number
}

export function validateItems (items: readonly unknown[]): ValidatedItems {
  const results: (ItemResult | undefined)[] = new Array(items.length)
  const valid: { index: number, item: BatchItem }[] = []
  let rejected = 0
  for (let i = 0; i < items.length; i++) {
    const raw = items[i]
    const key = itemKey(raw)
    if (key === null) {
      throw new BatchRefusal('unreadable', 'invalid_item', `items[${i}]: p and s must be unsigned integers, so this item cannot be answered on its own`, { field: `items[${i}]` })
    }
    try {
      valid.push({ index: i, item: validateItem(raw) })
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err
      results[i] = [key[0], key[1], AckCode.Rejected, err.message]
      rejected++
    }
  }
  return { results, valid, rejected }
}
