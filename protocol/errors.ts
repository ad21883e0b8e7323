/**
 * The project's one error hierarchy, shared by the gateway, the ingest, the
 * simulator and the tooling. Every class:
 *
 * - extends `EdgeError` and sets `name`;
 * - has a stable `code` (`EDGE_ERR_*`, as fastify's `FST_ERR_*`): declared once as the
 *   class's static `code`, copied to every instance, so `err.code === ValidationError.code`
 *   works and logs carry it. Codes are contracts: never reuse or rename one;
 * - takes `{ cause }` and keeps it;
 * - says whether retrying the same input can help (`retryable`), so callers separate
 *   permanent from transient failures.
 *
 * docs/errors.md has the table (class, code, retryable, where thrown, what the user sees);
 * test/unit/errors.test.ts fails for a class missing from it or outside the hierarchy.
 */
export abstract class EdgeError extends Error {
  /** The class's stable code; every subclass declares its own. */
  static readonly code: string = 'EDGE_ERR'
  override name = 'EdgeError'
  /** The stable code of the class that was thrown (`EDGE_ERR_*`). */
  readonly code: string
  readonly retryable: boolean
  constructor (message: string, opts: { cause?: unknown, retryable?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.code = new.target.code
    this.retryable = opts.retryable ?? false
  }
}

/** Input that does not match the contract; `field` names the offending field (dotted path). */
export class ValidationError extends EdgeError {
  static override readonly code = 'EDGE_ERR_VALIDATION'
  override name = 'ValidationError'
  readonly field: string
  constructor (field: string, message: string, opts: { cause?: unknown } = {}) {
    super(field ? `${field}: ${message}` : message, { ...opts, retryable: false })
    this.field = field
  }
}

/** Bytes that cannot be decoded at all (malformed CBOR/JSON, limits exceeded). */
export class DecodeError extends EdgeError {
  static override readonly code = 'EDGE_ERR_DECODE'
  override name = 'DecodeError'
  constructor (message: string, opts: { cause?: unknown } = {}) {
    super(message, { ...opts, retryable: false })
  }
}

/** A startup configuration error; `field` is the config key (camelCase) at fault. */
export class ConfigError extends EdgeError {
  static override readonly code = 'EDGE_ERR_CONFIG'
  override name = 'ConfigError'
  readonly field: string
  constructor (field: string, message: string, opts: { cause?: unknown } = {}) {
    super(`config ${field}: ${message}`, { ...opts, retryable: false })
    this.field = field
  }
}

/**
 * A storage operation failed; the readings it concerned were not acknowledged. A failed
 * write covers a whole group commit (many partitions and seqs), so it names none.
 */
export class StoreError extends EdgeError {
  static override readonly code: string = 'EDGE_ERR_STORE'
  override name = 'StoreError'
  constructor (message: string, opts: { cause?: unknown, retryable?: boolean } = {}) {
    super(message, { cause: opts.cause, retryable: opts.retryable ?? true })
  }
}

/**
 * An upstream HTTP exchange failed as a whole. `status` is 0 for network errors and
 * timeouts (HTTP answers, with their Retry-After, are responses, not errors).
 */
export class UpstreamError extends EdgeError {
  static override readonly code = 'EDGE_ERR_UPSTREAM'
  override name = 'UpstreamError'
  readonly status: number
  constructor (message: string, opts: { status: number, cause?: unknown, retryable?: boolean }) {
    super(message, { cause: opts.cause, retryable: opts.retryable ?? true })
    this.status = opts.status
  }
}

/**
 * An HTTP answer other than 2xx, thrown by a request handler (the ingest's routes, the
 * gateway's admin API) and sent by its server as `status` with the JSON body
 * `{ "error": errorCode, "message": message }` (the ingest adds `"field"` when set).
 * `errorCode` is the body's short code (`invalid_batch`, `bad_json`), a wire contract
 * (docs/ingest.md, docs/operator.md); `code` is this class's, as for every class here.
 */
export class HttpError extends EdgeError {
  static override readonly code = 'EDGE_ERR_HTTP'
  override name = 'HttpError'
  readonly status: number
  /** The body's `error` member. */
  readonly errorCode: string
  readonly field: string | undefined
  readonly headers: Record<string, string>
  /** Whether the connection must be closed after the answer (unread body left on the socket). */
  readonly closeConnection: boolean
  constructor (status: number, errorCode: string, message: string, opts: { field?: string, headers?: Record<string, string>, closeConnection?: boolean, cause?: unknown } = {}) {
    // 4xx but 429: the same request will get the same answer
    super(message, { cause: opts.cause, retryable: status >= 500 || status === 429 })
    this.status = status
    this.errorCode = errorCode
    this.field = opts.field
    this.headers = opts.headers ?? {}
    this.closeConnection = opts.closeConnection ?? false
  }
}
