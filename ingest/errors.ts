/** An HTTP answer other than 200: status, a short machine code and a message naming the field. */
export class HttpError extends Error {
  override name = 'HttpError'
  readonly status: number
  readonly code: string
  readonly field: string | undefined
  readonly headers: Record<string, string>
  /** Whether the connection must be closed after the answer (unread body left on the socket). */
  readonly closeConnection: boolean
  constructor (status: number, code: string, message: string, opts: { field?: string, headers?: Record<string, string>, closeConnection?: boolean, cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.status = status
    this.code = code
    this.field = opts.field
    this.headers = opts.headers ?? {}
    this.closeConnection = opts.closeConnection ?? false
  }

  /** 4xx: the same request will get the same answer. */
  get retryable (): boolean { return this.status >= 500 || this.status === 429 }
}
