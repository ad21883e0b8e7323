/**
 * What an upstream answers to one batch, in the flusher's own words, and the one interface
 * every upstream transport implements. deliver.ts acts on these answers only: it does not
 * know whether a batch went by HTTP (http-upstream.ts), through a cloud MQTT broker acked by
 * its PUBACK, or answered by a consumer's results message (mqtt-upstream.ts). Each transport
 * turns what it hears (an HTTP status and body, an MQTT 5 reason code, a results message, a
 * timeout) into an Answer; upstream.ts builds the transport the flags ask for.
 *
 *   results   one result per item, `[p, s, code, reason?]`, mapped back by ack-mapper.ts
 *   refused   the batch as a whole was refused, and why (`Refusal`): REFUSAL_RULES says
 *             what happens to it
 *   garbled   an answer came but could not be read (an unreadable HTTP 200 body): the same
 *             items go again after back-off; the upstream is there, so no failover
 *   none      no answer (connection error, timeout, results that never came): the same
 *             items go again after back-off, to the next upstream URL
 */
import type { AckResult } from './ack-mapper.ts'
import type { UpstreamState } from './health.ts'
import type { CompressionChoice, Wire } from './wire.ts'

/** Why an upstream refused a whole batch. */
export const Refusal = {
  /** our credentials were refused (HTTP 401/403, MQTT CONNACK or PUBACK "not authorized") */
  Auth: 'auth',
  /** the batch is larger than the upstream takes (HTTP 413, MQTT payload above the broker's limit) */
  TooLarge: 'too-large',
  /** the upstream cannot read the batch (HTTP 400): one item in it may be the poison */
  Unreadable: 'unreadable',
  /** the upstream is busy or down for a while (HTTP 429/503, MQTT quota exceeded or server busy) */
  Busy: 'busy',
  /** MQTT: the broker delivered the batch to nobody (PUBACK 0x10, no matching subscribers) */
  NoConsumer: 'no-consumer',
  /** the upstream is broken (any other HTTP 5xx): the next upstream URL may do better */
  Broken: 'broken',
  /** no such endpoint (HTTP 404/405): a protocol v2 batch goes again at once as v1 (wire.ts) */
  NoEndpoint: 'no-endpoint',
  /** anything else (3xx, other 4xx): misconfigured; the same URL again after back-off */
  Other: 'other'
} as const
export type Refusal = typeof Refusal[keyof typeof Refusal]

/**
 * The negotiation an answer carries, by name: `ingest-protocols` and `ingest-encodings`
 * (HTTP headers, MQTT 5 user properties of a results message). wire.ts reads them.
 */
export type Offers = Readonly<Record<string, string | string[] | undefined>>

/**
 * What every answer that reached us has: the upstream URL it came from, the bytes sent for
 * it (0: nothing was sent), and its offers (absent on an answer the transport made up
 * itself, which must not change the negotiation).
 */
type Heard = { url: string, sentBytes: number, offers?: Offers }

export type Answer =
  | Heard & { kind: 'results', results: readonly AckResult[] }
  | Heard & {
    kind: 'refused'
    reason: Refusal
    /** the upstream's words, for logs and /status */
    message: string
    /** how the metrics label it (outcome, status, retry reason): the HTTP status, for the MQTT refusals the status they have always been counted under */
    label: string
    /** how long the upstream asked us to wait (HTTP Retry-After, a results message's retryAfterMs) */
    retryAfterMs?: number
  }
  | Heard & { kind: 'garbled', error: Error }
  | { kind: 'none', error: Error }

/** One batch to send, encoded by deliver.ts: the body before compression and what it carries. */
export type OutgoingBatch = {
  body: Buffer
  wire: Wire
  /** the upstream URL chosen by `pick` */
  url: string
  batchId: string
  partition: number
  seqs: readonly number[]
}

/** What the flusher does with a refusal: `health` is the /status state, `failover` moves the next request to the next URL. */
export type RefusalAction = 'bisect' | 'split' | 'pause-auth' | 'retry-after' | 'backoff'
export type RefusalRule = { action: RefusalAction, health: UpstreamState, failover: boolean }

export const REFUSAL_RULES: Readonly<Record<Refusal, RefusalRule>> = {
  [Refusal.Unreadable]: { action: 'bisect', health: 'ok', failover: false },
  [Refusal.TooLarge]: { action: 'split', health: 'ok', failover: false },
  [Refusal.Auth]: { action: 'pause-auth', health: 'auth-failed', failover: false },
  [Refusal.Busy]: { action: 'retry-after', health: 'retrying', failover: false },
  // the broker took the batch and gave it to nobody: kept, sent again after back-off
  [Refusal.NoConsumer]: { action: 'backoff', health: 'retrying', failover: false },
  [Refusal.Broken]: { action: 'backoff', health: 'unreachable', failover: true },
  [Refusal.NoEndpoint]: { action: 'backoff', health: 'unreachable', failover: false },
  [Refusal.Other]: { action: 'backoff', health: 'unreachable', failover: false }
}

/** No answer (connection error, timeout): back-off, the same items, the next URL. */
export const NO_ANSWER_RULE: RefusalRule = { action: 'backoff', health: 'unreachable', failover: true }

/**
 * One upstream transport: HTTP (http-upstream.ts) or an MQTT broker (mqtt-upstream.ts),
 * built by `createUpstream` (upstream.ts) from the flags.
 *
 * A test or a simulation plugs in its own upstream by implementing this interface (a fake
 * that answers from a script or a seed needs `send` and trivial `pick`/`failover`/`start`/
 * `close`; `batching` as the flags say, e.g. `{ compression: 'none', batchMaxBytes }`, so
 * `body` is the plain CBOR batch) and passing it to the Flusher,
 * `new Flusher(store, config, publish, metrics, log, { upstream })`, or to the whole gateway,
 * `Gateway.create(config, log, { upstream })`; `--upstream` may then be empty. The flusher
 * runs unchanged against it: bisect, split, pauses, back-off and the ack mapper all act on
 * the Answers it returns, and its timing is the fake's (an answer, or no answer, comes when
 * `send` resolves). test/integration/upstream-contract.test.ts holds the cases every
 * transport must pass, and runs them against such a fake too.
 */
export interface BatchUpstream {
  /** the current upstream URL (for /status) */
  readonly url: string
  /** how batches for this transport are made: compression (`auto` resolved for it) and the item bytes one batch may carry */
  readonly batching: { compression: CompressionChoice, batchMaxBytes: number }
  /** the URL partition p's next batch goes to */
  pick: (p: number) => string
  /** after a failure of partition p's URL: the next request goes elsewhere (no-op with one URL, or where the client fails over itself) */
  failover: (p: number) => void
  /**
   * Sends one batch and resolves to its answer. Never rejects for what the upstream did
   * (a refused connection, a timeout, a bad answer are Answers); deliver.ts still counts a
   * rejection as no answer.
   */
  send: (batch: OutgoingBatch) => Promise<Answer>
  start: () => void
  /** Ends every connection; a send in flight resolves to no answer. Idempotent. */
  close: () => void | Promise<void>
}
