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
