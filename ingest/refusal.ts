/**
 * How a step of the batch pipeline (pipeline.ts, decode.ts, bounds.ts, chaos.ts, the topic
 * check of mqtt-consumer.ts) refuses a whole batch, without naming a transport: a
 * `BatchRefusal` says what happened (`kind`), with the short code and message the gateway
 * reads. Each front turns it into its own answer: the HTTP server (server.ts) into a status,
 * headers and JSON body, the MQTT consumer (mqtt-consumer.ts) into a results message.
 *
 * `REFUSAL_STATUS` is the one table kind -> status. The status is HTTP's, and the MQTT
 * results message carries the same number in its `status` field (a wire contract,
 * docs/upstream-mqtt.md), so a gateway hears the same refusal on either path and its
 * flusher acts on it the same way (gateway/flush/status-actions.ts).
 * Guarded by test/unit/ingest-refusal.test.ts.
 *
 * `CommandRefusal` (below) is the same pattern for commands to devices: the state machine
 * (commands/index.ts) refuses a caller's request in words, and the HTTP front
 * (commands/http.ts) maps the kind to a status with its one table.
 */
import { EdgeError } from '../protocol/errors.ts'

/**
 * What happened to the batch, in the words of what the gateway does next:
 * - unreadable: the batch (or one item without a usable key) cannot be read; bisect
 * - forbidden: the batch is not this sender's to write
 * - too-large: over a size or item limit; split
 * - unsupported: a content encoding the ingest does not take
 * - busy: nothing stored, try again later (after `retryAfterMs` when set)
 * - broken: the ingest failed (fault injection's 500)
 */
export const REFUSAL_KINDS = ['unreadable', 'forbidden', 'too-large', 'unsupported', 'busy', 'broken'] as const

export type RefusalKind = typeof REFUSAL_KINDS[number]

/** The status of each kind: HTTP's answer and the MQTT results message's `status`. */
export const REFUSAL_STATUS: Readonly<Record<RefusalKind, number>> = {
  unreadable: 400,
  forbidden: 403,
  'too-large': 413,
  unsupported: 415,
  busy: 503,
  broken: 500
}

/**
 * A whole batch refused by a pipeline step. `errorCode` is the answer's `error` member
 * (`invalid_batch`, `too_many_items`...: docs/errors.md), a wire contract; `code` is this
 * class's, as for every class of the hierarchy.
 */
export class BatchRefusal extends EdgeError {
  static override readonly code = 'EDGE_ERR_BATCH_REFUSED'
  override name = 'BatchRefusal'
  readonly kind: RefusalKind
  /** The answer's `error` member. */
  readonly errorCode: string
  /** The offending field (dotted path), when one is at fault. */
  readonly field: string | undefined
  /** How long the gateway should wait before sending the batch again, when the ingest says. */
  readonly retryAfterMs: number | undefined
  constructor (kind: RefusalKind, errorCode: string, message: string, opts: { field?: string, retryAfterMs?: number, cause?: unknown } = {}) {
    super(message, { cause: opts.cause, retryable: kind === 'busy' || kind === 'broken' })
    this.kind = kind
    this.errorCode = errorCode
    this.field = opts.field
    this.retryAfterMs = opts.retryAfterMs
  }
}

/**
 * How the command state machine (commands/index.ts) and the MQTT side of commands
 * (commands/mqtt.ts) refuse a caller's request or a gateway's reports, without naming a
 * transport, in the words of what went wrong:
 * - invalid: a member, header or query value of the request is not acceptable (`field` names it)
 * - unreadable: the gateway's reports cannot be decoded
 * - forbidden: the request is not this sender's to make (reports naming another gateway, or from one not listed)
 * - unknown: no such device (for the caller's fleet) or command
 * - conflict: the device's or the command's state does not allow it now (offline, not cancellable)
 * - key-reused: an Idempotency-Key already names another request
 * - too-large: over a size limit
 * - too-many-pending: the device holds as many open commands as it may
 * - rate-limited: over the caller's rate; `retryAfterMs` says when a token is there
 *
 * The HTTP front maps each kind to its status with one table (`COMMAND_REFUSAL_STATUS`,
 * commands/http.ts); the MQTT side counts and logs a refusal and answers the reports `3`.
 */
export const COMMAND_REFUSAL_KINDS = ['invalid', 'unreadable', 'forbidden', 'unknown', 'conflict', 'key-reused', 'too-large', 'too-many-pending', 'rate-limited'] as const

export type CommandRefusalKind = typeof COMMAND_REFUSAL_KINDS[number]

/**
 * A command request (or a gateway's reports) refused. `errorCode` is the answer's `error`
 * member (`invalid_command`, `unknown_device`, `rate_limited`...: docs/commands.md) and the
 * `reason` of `ingest_command_refusals_total`, a wire contract; `code` is this class's.
 */
export class CommandRefusal extends EdgeError {
  static override readonly code = 'EDGE_ERR_COMMAND_REFUSED'
  override name = 'CommandRefusal'
  readonly kind: CommandRefusalKind
  /** The answer's `error` member. */
  readonly errorCode: string
  /** The member, header or query parameter at fault, when one is. */
  readonly field: string | undefined
  /** How long the caller should wait before trying again, when that helps. */
  readonly retryAfterMs: number | undefined
  constructor (kind: CommandRefusalKind, errorCode: string, message: string, opts: { field?: string, retryAfterMs?: number, cause?: unknown } = {}) {
    // the same request is refused again, but for a limit that clears with time
    super(message, { cause: opts.cause, retryable: kind === 'rate-limited' || kind === 'too-many-pending' })
    this.kind = kind
    this.errorCode = errorCode
    this.field = opts.field
    this.retryAfterMs = opts.retryAfterMs
  }
}
