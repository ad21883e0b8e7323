/**
 * The MQTT upstream's wire contract (docs/upstream-mqtt.md): topic templates and the
 * results message. Shared by the gateway (publisher of batches, reader of results) and the
 * ingest's MQTT consumer (the reverse).
 *
 * Topics. A batch is one PUBLISH at QoS 1 to a template, default
 * `gateways/{gatewayId}/batches/{partition}`; its results come back on
 * `gateways/{gatewayId}/results`. `{gatewayId}` and `{partition}` stand for whole topic
 * levels, so a template turns into a subscription filter by putting `+` there, and a topic
 * into its gateway id and partition by reading those levels back.
 *
 * Payload of a batch: exactly the HTTP request body (protocol v1 or v2, the `v` key says
 * which), optionally compressed; gzip and zlib-deflate are told from CBOR by their first
 * bytes (a batch is a CBOR map: first byte 0xa0..0xbf; gzip starts 1f 8b, zlib 78 xx), so no
 * header is needed and a consumer that does not compress reads plain CBOR.
 *
 * Results message: exactly the HTTP 200 answer body of the batch's version (v1
 * `{v, batch, results: [[p, s, code, reason?]...]}`, v2 `{v: 2, batch, r, why}`). When the
 * consumer refuses the batch as a whole it adds `status` (the HTTP status the same refusal
 * gets over HTTP: 400 bisect, 413 split, 503 retry...), `error`, `message` and optionally
 * `retryAfterMs`; such a message has no per-item results. No `status` means 200.
 */
import { decodeUntrusted, encodeCbor } from './cbor.ts'
import { encodeResponse, type ItemResult } from './batch.ts'
import { encodeResponseV2 } from './batch-v2.ts'
import { ConfigError, DecodeError, ValidationError } from './errors.ts'

export const DEFAULT_BATCH_TOPIC = 'gateways/{gatewayId}/batches/{partition}'
export const DEFAULT_RESULTS_TOPIC = 'gateways/{gatewayId}/results'

const PLACEHOLDER_RE = /\{(gatewayId|partition)\}/g

/**
 * Checks a topic template: no wildcards, each placeholder a whole level at most once,
 * `{gatewayId}` required (every gateway has its own topics; the ACL confines it to them).
 */
export function checkTopicTemplate (field: string, template: string, opts: { partition: boolean }): void {
  if (template.length === 0 || template.length > 512) throw new ValidationError(field, 'must be 1..512 characters')
  if (/[#+\0]/.test(template)) throw new ValidationError(field, 'must not contain the wildcards + or # (the placeholders stand for levels)')
  if (template.startsWith('$')) throw new ValidationError(field, 'must not start with $ (reserved by brokers)')
  const levels = template.split('/')
  for (const name of ['gatewayId', 'partition'] as const) {
    const n = levels.filter((l) => l === `{${name}}`).length
    const anywhere = template.split(`{${name}}`).length - 1
    if (anywhere !== n) throw new ValidationError(field, `{${name}} must be a whole topic level`)
    if (n > 1) throw new ValidationError(field, `{${name}} may appear once`)
    if (name === 'gatewayId' && n === 0) throw new ValidationError(field, 'must contain {gatewayId}')
    if (name === 'partition' && n === 1 && !opts.partition) throw new ValidationError(field, 'has no {partition}')
  }
}

/**
 * The startup check of one side's two templates (gateway flags or ingest flags): the batch
 * topic with its partition, the results topic without; a bad one is a ConfigError naming
 * its key.
 */
export function checkTopicTemplates (batch: { key: string, template: string }, results: { key: string, template: string }): void {
  try {
    checkTopicTemplate(batch.key, batch.template, { partition: true })
    checkTopicTemplate(results.key, results.template, { partition: false })
  } catch (err) {
    if (err instanceof ValidationError) throw new ConfigError(err.field, err.message.slice(err.field.length + 2))
    throw err
  }
}

/** The topic of a gateway's batch (or results, without a partition). */
export function fillTopic (template: string, gatewayId: string, partition?: number): string {
  return template.replace(PLACEHOLDER_RE, (_m, name: string) => name === 'gatewayId' ? gatewayId : String(partition ?? ''))
}

/** The subscription filter of every gateway's topics: `+` for each placeholder. */
export function topicFilter (template: string): string {
  return template.replace(PLACEHOLDER_RE, '+')
}

/** Gateway id and partition of a topic that matches the template, else null. */
export function parseTopic (template: string, topic: string): { gatewayId: string, partition: number | null } | null {
  const t = template.split('/')
  const l = topic.split('/')
  if (t.length !== l.length) return null
  let gatewayId = ''
  let partition: number | null = null
  for (let i = 0; i < t.length; i++) {
    if (t[i] === '{gatewayId}') gatewayId = l[i]!
    else if (t[i] === '{partition}') {
      if (!/^\d{1,5}$/.test(l[i]!)) return null
      partition = Number(l[i])
    } else if (t[i] !== l[i]) return null
  }
  return gatewayId === '' ? null : { gatewayId, partition }
}

/** The body's compression, told by its first bytes (see the header). */
/**
 * MQTT 5 user property naming a batch's compression, the HTTP header's name and values
 * (identity, gzip, deflate, br). Required for br, which has no magic bytes; a payload
 * without it is sniffed (`sniffEncoding`).
 */
export const CONTENT_ENCODING = 'content-encoding'

export function sniffEncoding (payload: Uint8Array): 'identity' | 'gzip' | 'deflate' {
  if (payload.length >= 2 && payload[0] === 0x1f && payload[1] === 0x8b) return 'gzip'
  // zlib: CM 8, CINFO <= 7 (so 0x08..0x78: never a CBOR map head) and the header check
  if (payload.length >= 2 && (payload[0]! & 0x0f) === 8 && payload[0]! >> 4 <= 7 && ((payload[0]! << 8) | payload[1]!) % 31 === 0) return 'deflate'
  return 'identity'
}

/** The protocol version a (decompressed) batch says, by its first key `v` (v1 when it does not say 2). */
export function sniffVersion (body: Uint8Array): 1 | 2 {
  // map head, then "v" (0x61 0x76), then the small uint
  return body.length >= 4 && body[0]! >= 0xa0 && body[0]! <= 0xbf && body[1] === 0x61 && body[2] === 0x76 && body[3] === 2 ? 2 : 1
}

export type WholeBatchRefusal = { status: number, error: string, message: string, retryAfterMs?: number }

/** A results message: per-item results (the HTTP 200 body), or a refusal of the whole batch. */
export function encodeResultsMessage (version: 1 | 2, batch: string, answer: { results: ItemResult[] } | WholeBatchRefusal): Buffer {
  if ('results' in answer) return version === 2 ? encodeResponseV2({ batch, results: answer.results }) : encodeResponse({ batch, results: answer.results })
  const { status, error, message, retryAfterMs } = answer
  return encodeCbor({ v: version, batch, status, error, message: message.slice(0, 1000), ...(retryAfterMs === undefined ? {} : { retryAfterMs }), ...(version === 2 ? { r: [], why: [] } : { results: [] }) })
}

export type ResultsHeader = { v: number, batch: string, status: number, error: string, message: string, retryAfterMs: number | undefined }

/** The envelope of a results message (untrusted: any broker client may publish there). */
export function decodeResultsHeader (payload: Uint8Array): ResultsHeader {
  const raw = decodeUntrusted(payload, { maxDepth: 4 })
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || raw instanceof Uint8Array) throw new DecodeError('results message must be a CBOR map')
  const o = raw as Record<string, unknown>
  if (typeof o.batch !== 'string' || o.batch.length === 0 || o.batch.length > 128) throw new ValidationError('batch', 'must be text of 1..128 characters')
  if (o.v !== 1 && o.v !== 2) throw new ValidationError('v', 'must be 1 or 2')
  const status = o.status === undefined ? 200 : o.status
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 100 || status > 599) throw new ValidationError('status', 'must be an HTTP status 100..599')
  const retryAfterMs = typeof o.retryAfterMs === 'number' && Number.isSafeInteger(o.retryAfterMs) && o.retryAfterMs >= 0 ? o.retryAfterMs : undefined
  return { v: o.v, batch: o.batch, status, error: typeof o.error === 'string' ? o.error.slice(0, 100) : '', message: typeof o.message === 'string' ? o.message.slice(0, 1000) : '', retryAfterMs }
}

/**
 * What a results message says in its first bytes: its version, its batch id, and how many
 * entries its results array declares (`results` in v1, the flat runs `r` in v2), read
 * without decoding the rest. The gateway looks the batch id up before it decodes anything
 * else, so a results message for a batch it is not waiting for, or far longer than the
 * batch it answers, costs a few bytes of reading instead of a full decode (a 20 MB message
 * of five million entries stalled every device's PUBACK for seconds when it was decoded
 * whole first).
 *
 * Reads the map head, then key by key: scalar values are skipped in O(1), the first array
 * or map stops the read (skipping it would mean walking it). `entriesAt` is the offset of
 * the first entry of that array. Null when the message is not a definite-length map whose
 * `batch` comes before its first array or map: the encoders here write
 * `{v, batch, status?, error?, message?, retryAfterMs?, results}` (v2: `{v, batch, r, why}`)
 * in that order.
 */
export type ResultsPeek = { v: number | undefined, batch: string, entries: number | undefined, entriesAt: number }

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** A cursor over CBOR heads (RFC 8949 section 3): major type and argument, nothing decoded beyond them. */
class CborHeads {
  at = 0
  constructor (private readonly b: Uint8Array) {}

  /** The next head; null at the end of the bytes, for an indefinite length or an argument above 2^53. */
  next (): { major: number, arg: number } | null {
    const b = this.b
    if (this.at >= b.length) return null
    const ib = b[this.at++]!
    const ai = ib & 31
    if (ai < 24) return { major: ib >> 5, arg: ai }
    const n = ai === 24 ? 1 : ai === 25 ? 2 : ai === 26 ? 4 : ai === 27 ? 8 : 0
    if (n === 0 || this.at + n > b.length) return null
    let arg = 0
    for (let i = 0; i < n; i++) arg = arg * 256 + b[this.at++]!
    return Number.isSafeInteger(arg) ? { major: ib >> 5, arg } : null
  }

  /** Skips (or reads as UTF-8) the content of a byte or text string of `len` bytes. */
  skip (len: number): boolean {
    if (this.at + len > this.b.length) return false
    this.at += len
    return true
  }

  text (len: number): string | null {
    if (this.at + len > this.b.length) return null
    try {
      return utf8.decode(this.b.subarray(this.at, this.at + len))
    } catch {
      return null
    } finally {
      this.at += len
    }
  }
}

const MAJOR = { uint: 0, bytes: 2, text: 3, array: 4, map: 5 } as const

export function peekResults (payload: Uint8Array): ResultsPeek | null {
  const h = new CborHeads(payload)
  const map = h.next()
  if (!map || map.major !== MAJOR.map || map.arg > 64) return null
  let v: number | undefined
  let batch: string | undefined
  for (let i = 0; i < map.arg; i++) {
    const k = h.next()
    if (!k || k.major !== MAJOR.text || k.arg > 64) return null
    const key = h.text(k.arg)
    const val = h.next()
    if (key === null || !val) return null
    if (val.major === MAJOR.array || val.major === MAJOR.map || val.major === 6) {
      if (batch === undefined) return null
      const results = val.major === MAJOR.array && (key === 'results' || key === 'r')
      return { v, batch, entries: results ? val.arg : undefined, entriesAt: h.at }
    }
    if (val.major === MAJOR.bytes || val.major === MAJOR.text) {
      if (key === 'batch' && val.major === MAJOR.text && val.arg <= 512) {
        const t = h.text(val.arg)
        if (t === null) return null
        batch = t
      } else if (!h.skip(val.arg)) return null
    } else if (key === 'v' && val.major === MAJOR.uint) v = val.arg
  }
  return batch === undefined ? null : { v, batch, entries: undefined, entriesAt: h.at }
}

/**
 * How many items the runs of a v2 results message answer: the sum of the counts of the
 * runs `[p, s, count, code]` in the `ints` integers of `r` starting at `at`
 * (ResultsPeek.entriesAt and .entries), walking only integers; stops early once the sum
 * exceeds `limit`. Null when an entry is not an unsigned integer (the message is malformed).
 */
export function v2RunItems (payload: Uint8Array, at: number, ints: number, limit: number): number | null {
  const h = new CborHeads(payload)
  h.at = at
  let sum = 0
  for (let i = 0; i < ints; i++) {
    const x = h.next()
    if (!x || x.major !== MAJOR.uint) return null
    if (i % 4 === 2) {
      sum += x.arg
      if (sum > limit) return sum
    }
  }
  return sum
}
