/**
 * The HTTP request body of `POST /v1/batches` (server.ts's `readRequestBody` step), read with
 * the size limit enforced while it streams in: a body over maxBodyBytes is not buffered past
 * the limit, and its 413 closes the connection (the rest of the body is left unread on the
 * socket). HTTP only: its failures are `HttpError`s; the decompression and the decoding after
 * it are transport-free (decode.ts).
 */
import type { IncomingMessage } from 'node:http'
import { HttpError } from './errors.ts'

const tooLarge = (what: string, max: number): HttpError =>
  new HttpError(413, 'body_too_large', `${what} exceeds maxBodyBytes ${max}`, { field: 'body', closeConnection: true })

/** Reads the raw (possibly compressed) body, at most maxBytes. */
export function readBody (req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = req.headers['content-length']
  if (declared !== undefined && Number(declared) > maxBytes) return Promise.reject(tooLarge(`content-length ${declared}`, maxBytes))
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (err: Error | null): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onError)
      req.off('aborted', onAborted)
      if (err) reject(err)
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size))
    }
    const onData = (c: Buffer): void => {
      size += c.length
      if (size > maxBytes) {
        // Stop buffering at once; the connection is closed after the 413.
        req.pause()
        chunks.length = 0
        done(tooLarge('body', maxBytes))
        return
      }
      chunks.push(c)
    }
    const onEnd = (): void => done(null)
    const onError = (err: Error): void => done(new HttpError(400, 'body_error', `request body: ${err.message}`, { closeConnection: true, cause: err }))
    const onAborted = (): void => done(new HttpError(400, 'body_aborted', 'client aborted the request', { closeConnection: true }))
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onError)
    req.on('aborted', onAborted)
  })
}
