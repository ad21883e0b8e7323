/**
 * HTTP statuses in the flusher's words: which Answer (answer.ts) an HTTP status of the
 * ingest is, and so what the flusher does with the batch (docs/upstream.md quotes this
 * table). Read by the HTTP client (http-upstream.ts) and by the MQTT upstream for a results
 * message, whose `status` is the HTTP status the same refusal gets over HTTP (protocol
 * upstream-mqtt.ts). Per-item results of a 200 are mapped by ack-mapper.ts.
 *
 *   action      what happens to the batch
 *   per-item    decode the results: each item deleted, retried or dead-lettered
 *   bisect      halves sent on their own until the poison item is alone: dead-lettered
 *   split       halves sent on their own (the batch was too large)
 *   pause-auth  all partitions stop for authRetryMs, /readyz unready, never dead-lettered
 *   retry-after the same items again after Retry-After (capped), else after backoff
 *   backoff     the same items again after exponential backoff
 *
 * One answer comes before the table: a protocol v2 request answered 404 or 405 (an ingest
 * without /v2/batches) is sent again at once as v1 (wire.ts, docs/protocol-v2.md).
 *
 * `health` is the upstream state reported in /status; `failover` moves the next request to
 * the next --upstream URL.
 */
import { NO_ANSWER_RULE, REFUSAL_RULES, Refusal, type RefusalRule } from './answer.ts'
import type { UpstreamState } from './health.ts'

export type StatusAction = 'per-item' | RefusalRule['action']

export type StatusRule = { action: StatusAction, health: UpstreamState, failover: boolean }

const PER_ITEM: StatusRule = { action: 'per-item', health: 'ok', failover: false }

/** The statuses with a meaning of their own; any other is Broken (5xx) or Other. */
const STATUS_REFUSALS: Readonly<Record<number, Refusal>> = {
  400: Refusal.Unreadable,
  413: Refusal.TooLarge,
  401: Refusal.Auth,
  403: Refusal.Auth,
  429: Refusal.Busy,
  503: Refusal.Busy,
  404: Refusal.NoEndpoint,
  405: Refusal.NoEndpoint
}

/** Why a non-200 status refused the batch. */
export function refusalOf (status: number): Refusal {
  return STATUS_REFUSALS[status] ?? (status >= 500 ? Refusal.Broken : Refusal.Other)
}

export const STATUS_ACTIONS: Readonly<Record<number, StatusRule>> = {
  200: PER_ITEM,
  400: REFUSAL_RULES[Refusal.Unreadable],
  413: REFUSAL_RULES[Refusal.TooLarge],
  401: REFUSAL_RULES[Refusal.Auth],
  403: REFUSAL_RULES[Refusal.Auth],
  429: REFUSAL_RULES[Refusal.Busy],
  503: REFUSAL_RULES[Refusal.Busy]
}

/** Any other 5xx: the ingest is broken, try the next URL. */
export const OTHER_5XX: StatusRule = REFUSAL_RULES[Refusal.Broken]
/** Any other status (3xx, 404...): misconfigured, retry the same URL. */
export const OTHER_STATUS: StatusRule = REFUSAL_RULES[Refusal.Other]
/** No HTTP answer (connection error, timeout): try the next URL. */
export const NO_ANSWER: StatusRule = NO_ANSWER_RULE

export function ruleFor (status: number): StatusRule {
  return status === 200 ? PER_ITEM : REFUSAL_RULES[refusalOf(status)]
}

/** The words of an error answer's body (`{error, message}` JSON, else its first bytes). */
export function errorMessage (body: Buffer): string {
  if (body.length === 0) return ''
  try {
    const j = JSON.parse(body.subarray(0, 4096).toString('utf8')) as { error?: unknown, message?: unknown }
    return [j.error, j.message].filter((x) => typeof x === 'string').join(': ')
  } catch {
    return body.subarray(0, 200).toString('utf8')
  }
}
