/** The ingest's errors are the shared hierarchy's (protocol/errors.ts, docs/errors.md). */
export { HttpError } from '../protocol/errors.ts'
