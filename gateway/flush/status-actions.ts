/**
 * What the flusher does with each HTTP answer of the ingest to a whole batch (upstream
 * protocol v1; docs/upstream.md quotes this table). Per-item results of a 200 are mapped by
 * ack-mapper.ts.
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
import type { UpstreamState } from './health.ts'

export type StatusAction = 'per-item' | 'bisect' | 'split' | 'pause-auth' | 'retry-after' | 'backoff'

export type StatusRule = { action: StatusAction, health: UpstreamState, failover: boolean }

export const STATUS_ACTIONS: Readonly<Record<number, StatusRule>> = {
  200: { action: 'per-item', health: 'ok', failover: false },
  400: { action: 'bisect', health: 'ok', failover: false },
  413: { action: 'split', health: 'ok', failover: false },
  401: { action: 'pause-auth', health: 'auth-failed', failover: false },
  403: { action: 'pause-auth', health: 'auth-failed', failover: false },
  429: { action: 'retry-after', health: 'retrying', failover: false },
  503: { action: 'retry-after', health: 'retrying', failover: false }
}

/** Any other 5xx: the ingest is broken, try the next URL. */
export const OTHER_5XX: StatusRule = { action: 'backoff', health: 'unreachable', failover: true }
/** Any other status (3xx, 404...): misconfigured, retry the same URL. */
export const OTHER_STATUS: StatusRule = { action: 'backoff', health: 'unreachable', failover: false }
/** No HTTP answer (connection error, timeout): try the next URL. */
export const NO_ANSWER: StatusRule = { action: 'backoff', health: 'unreachable', failover: true }

export function ruleFor (status: number): StatusRule {
  return STATUS_ACTIONS[status] ?? (status >= 500 ? OTHER_5XX : OTHER_STATUS)
}
