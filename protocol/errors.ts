/**
 * Error classes shared by every side. Each says whether retrying the same input can help
 * (`retryable`), so callers separate permanent from transient failures.
 */
export class GatewayError extends Error {
  override name = 'GatewayError'
  readonly retryable: boolean
  constructor (message: string, opts: { cause?: unknown, retryable?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.retryable = opts.retryable ?? false
  }
}

/** Input that does not match the contract; `field` names the offending field (dotted path). */
export class ValidationError extends GatewayError {
  override name = 'ValidationError'
  readonly field: string
  constructor (field: string, message: string, opts: { cause?: unknown } = {}) {
    super(field ? `${field}: ${message}` : message, { ...opts, retryable: false })
    this.field = field
  }
}

/** Bytes that cannot be decoded at all (malformed CBOR/JSON, limits exceeded). */
export class DecodeError extends GatewayError {
  override name = 'DecodeError'
  constructor (message: string, opts: { cause?: unknown } = {}) {
    super(message, { ...opts, retryable: false })
  }
}

/** A startup configuration error; `field` is the config key (camelCase) at fault. */
export class ConfigError extends GatewayError {
  override name = 'ConfigError'
  readonly field: string
  constructor (field: string, message: string) {
    super(`config ${field}: ${message}`, { retryable: false })
    this.field = field
  }
}

/**
 * A storage operation failed; the readings it concerned were not acknowledged. A failed
 * write covers a whole group commit (many partitions and seqs), so it names none.
 */
export class StoreError extends GatewayError {
  override name = 'StoreError'
  constructor (message: string, opts: { cause?: unknown, retryable?: boolean } = {}) {
    super(message, { cause: opts.cause, retryable: opts.retryable ?? true })
  }
}

/**
 * An upstream HTTP exchange failed as a whole. `status` is 0 for network errors and
 * timeouts (HTTP answers, with their Retry-After, are responses, not errors).
 */
export class UpstreamError extends GatewayError {
  override name = 'UpstreamError'
  readonly status: number
  constructor (message: string, opts: { status: number, cause?: unknown, retryable?: boolean }) {
    super(message, { cause: opts.cause, retryable: opts.retryable ?? true })
    this.status = opts.status
  }
}
