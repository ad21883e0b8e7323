/**
 * The command routes of the ingest's HTTP front (docs/commands.md), called by server.ts
 * before its own routes:
 *
 * - the caller's API (JSON, command tokens: auth.ts): `POST /v1/devices/{deviceId}/commands`,
 *   `GET /v1/commands/{id}`, `GET /v1/commands`, `DELETE /v1/commands/{id}`;
 * - the gateway's (CBOR, the gateway's token or client certificate, as `POST /v1/batches`):
 *   the long poll `GET /v1/gateway/commands?wait=MS` and `POST /v1/gateway/command-reports`.
 *
 * Errors are HttpErrors; server.ts answers them as JSON `{ error, message, field? }`. The state
 * machine (index.ts) knows no HTTP: it refuses with a `CommandRefusal` (refusal.ts), which
 * `httpErrorOfCommand` turns into one, its status from the one table
 * `COMMAND_REFUSAL_STATUS` (and `Retry-After` when the refusal says when to retry). What a
 * cancel did comes back in words too, and `CANCEL_STATUS` gives its status.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { COMMAND_STATES, decodeReportsRequest, encodeCommandsMessage, encodeReportsResponse, type CommandState } from '../../protocol/commands.ts'
import { DecodeError, ValidationError } from '../../protocol/index.ts'
import { readBody } from '../body.ts'
import { decodeContent } from '../decode.ts'
import { HttpError } from '../errors.ts'
import { CommandRefusal, type CommandRefusalKind } from '../refusal.ts'
import { ALL_FLEETS, DEFAULT_FLEET } from '../read-auth.ts'
import type { CommandAuth, CommandScope } from './auth.ts'
import type { CancelOutcome, Commands } from './index.ts'
import type { CommandRecord } from './store.ts'

/** The longest long poll a gateway may ask for. */
export const MAX_POLL_MS = 30_000
/** Reports and presence entries in one reports request, each. */
export const MAX_REPORTS = 10_000
const MAX_JSON_BYTES = 1024 * 1024

export type CommandHttpDeps = {
  commands: Commands
  auth: CommandAuth
  /** The gateway the request authenticates as (token or client certificate), else throws 401/403. */
  authenticateGateway: (req: IncomingMessage) => string
  /** The caller's scope, the wrong-token back-off applied (server.ts wraps auth.scope). */
  scope: (req: IncomingMessage) => CommandScope
  fleetOf: (gateway: string) => string
  maxBodyBytes: number
}

/** The HTTP status of each kind of command refusal (docs/commands.md lists the answers). */
export const COMMAND_REFUSAL_STATUS: Readonly<Record<CommandRefusalKind, number>> = {
  invalid: 400,
  unreadable: 400,
  forbidden: 403,
  unknown: 404,
  conflict: 409,
  'too-large': 413,
  'key-reused': 422,
  'too-many-pending': 429,
  'rate-limited': 429
}

/**
 * The HTTP status of each outcome of a DELETE (`Commands.cancel`): 200 when the command is
 * cancelled, 202 while the cancel waits for the gateway holding it.
 */
export const CANCEL_STATUS: Readonly<Record<CancelOutcome, number>> = {
  cancelled: 200,
  requested: 202,
  'already-requested': 202
}

/** A command refusal as the HTTP front answers it: the status of its kind, its code, message and field, `Retry-After` in whole seconds when it says when. */
export function httpErrorOfCommand (r: CommandRefusal): HttpError {
  return new HttpError(COMMAND_REFUSAL_STATUS[r.kind], r.errorCode, r.message, {
    ...(r.field !== undefined ? { field: r.field } : {}),
    headers: r.retryAfterMs === undefined ? {} : { 'retry-after': String(Math.ceil(r.retryAfterMs / 1000)) },
    cause: r
  })
}

/** The JSON view of a command. */
export function view (r: CommandRecord): Record<string, unknown> {
  return {
    id: r.id,
    fleet: r.fleet,
    device: r.device,
    name: r.name,
    args: r.args,
    state: r.state,
    gateway: r.gateway,
    createdAt: r.createdAt,
    expiresAt: r.expiresAt,
    updatedAt: r.updatedAt,
    ...(r.state === 'completed' ? { result: r.result ?? null } : {}),
    ...(r.state === 'rejected' ? { error: r.error ?? '' } : {}),
    ...(r.recall === 'cancel' ? { cancel: 'requested' } : {}),
    history: r.history
  }
}

function sendJson (res: ServerResponse, status: number, obj: unknown): void {
  const body = JSON.stringify(obj)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

function sendCbor (res: ServerResponse, body: Buffer): void {
  res.writeHead(200, { 'content-type': 'application/cbor', 'content-length': body.length })
  res.end(body)
}

function intParam (url: URL, name: string, min: number, max: number): number | undefined {
  const v = url.searchParams.get(name)
  if (v === null) return undefined
  if (!/^\d{1,16}$/.test(v) || Number(v) < min || Number(v) > max) throw new HttpError(400, 'invalid_query', `${name} must be an integer in ${min}..${max}`, { field: name })
  return Number(v)
}

function method (req: IncomingMessage, ...allowed: string[]): void {
  if (!allowed.includes(req.method ?? '')) throw new HttpError(405, 'method_not_allowed', `use ${allowed.join(' or ')}`, { headers: { allow: allowed.join(', ') } })
}

/** A command's fleet: the token's, or with a `*` token `?fleet=` (default `default`). */
function fleetFor (scope: CommandScope, url: URL): string {
  if (scope.fleet !== ALL_FLEETS) return scope.fleet
  const f = url.searchParams.get('fleet') ?? DEFAULT_FLEET
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(f)) throw new HttpError(400, 'invalid_query', 'fleet must be 1..64 of A-Z a-z 0-9 . _ -', { field: 'fleet' })
  return f
}

function pathPart (s: string, field: string): string {
  try { return decodeURIComponent(s) } catch { throw new HttpError(400, 'invalid_query', `${field}: malformed percent-encoding in the path`, { field }) }
}

/**
 * A signal that aborts when the response's connection closes before it is answered (the
 * client went away), already aborted if it has; `release` stops listening (call it once the
 * wait is over).
 */
function abortOnClose (req: IncomingMessage, res: ServerResponse): { signal: AbortSignal, release: () => void } {
  const gone = new AbortController()
  const abort = (): void => { gone.abort() }
  res.once('close', abort)
  if (res.destroyed || req.socket.destroyed) abort()
  return { signal: gone.signal, release: () => { res.off('close', abort) } }
}

const DEVICE_PATH = /^\/v1\/devices\/([^/]+)\/commands$/
const COMMAND_PATH = /^\/v1\/commands\/([^/]+)$/

/** Whether `path` is one of the command routes. */
export function isCommandPath (path: string): boolean {
  return path === '/v1/gateway/commands' || path === '/v1/gateway/command-reports' || path === '/v1/commands' || DEVICE_PATH.test(path) || COMMAND_PATH.test(path)
}

/** Serves a command route; null when `url` is not one (server.ts goes on with its own). */
export async function serveCommands (req: IncomingMessage, res: ServerResponse, url: URL, deps: CommandHttpDeps): Promise<string | null> {
  try {
    return await route(req, res, url, deps)
  } catch (e) {
    throw e instanceof CommandRefusal ? httpErrorOfCommand(e) : e
  }
}

async function route (req: IncomingMessage, res: ServerResponse, url: URL, deps: CommandHttpDeps): Promise<string | null> {
  const path = url.pathname
  const { commands } = deps
  if (path === '/v1/gateway/commands') {
    method(req, 'GET')
    const gateway = deps.authenticateGateway(req)
    const wait = Math.min(intParam(url, 'wait', 0, 3_600_000) ?? 0, MAX_POLL_MS)
    // a gateway that hangs up ends its poll at once (not at the next re-read)
    const gone = abortOnClose(req, res)
    let pending
    try {
      pending = await commands.waitPending(gateway, wait, gone.signal)
    } finally {
      gone.release()
    }
    if (gone.signal.aborted) return 'gateway-commands' // nobody to answer
    sendCbor(res, encodeCommandsMessage(pending))
    return 'gateway-commands'
  }
  if (path === '/v1/gateway/command-reports') {
    method(req, 'POST')
    const gateway = deps.authenticateGateway(req)
    const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
    if (ct !== 'application/cbor') throw new HttpError(415, 'unsupported_media_type', `content-type must be application/cbor, got ${JSON.stringify(ct.slice(0, 60))}`, { field: 'content-type', closeConnection: true })
    const body = await decodeContent(await readBody(req, deps.maxBodyBytes), req.headers['content-encoding'], deps.maxBodyBytes)
    let request
    try {
      request = decodeReportsRequest(body, { maxReports: MAX_REPORTS })
    } catch (e) {
      if (e instanceof ValidationError) throw new CommandRefusal('unreadable', 'invalid_reports', e.message, { field: e.field, cause: e })
      if (e instanceof DecodeError) throw new CommandRefusal('unreadable', 'invalid_reports', e.message, { field: 'body', cause: e })
      throw e
    }
    if (request.gateway !== gateway) throw new CommandRefusal('forbidden', 'forbidden', `the token belongs to gateway ${gateway}, the reports say ${JSON.stringify(request.gateway.slice(0, 64))}`, { field: 'gateway' })
    const results = await commands.applyReports(gateway, deps.fleetOf(gateway), request)
    sendCbor(res, encodeReportsResponse({ batch: request.batch, results }))
    return 'command-reports'
  }
  const dm = DEVICE_PATH.exec(path)
  if (dm !== null) {
    method(req, 'POST')
    const scope = deps.scope(req)
    const device = pathPart(dm[1]!, 'device')
    const ct = (req.headers['content-type'] ?? 'application/json').split(';')[0]!.trim().toLowerCase()
    if (ct !== 'application/json') throw new HttpError(415, 'unsupported_media_type', `content-type must be application/json, got ${JSON.stringify(ct.slice(0, 60))}`, { field: 'content-type', closeConnection: true })
    const raw = await readBody(req, MAX_JSON_BYTES)
    let body: unknown
    try { body = JSON.parse(raw.toString('utf8')) } catch (err) { throw new HttpError(400, 'invalid_json', `body: ${(err as Error).message}`, { field: 'body' }) }
    const wait = intParam(url, 'wait', 0, 3_600_000)
    const offline = url.searchParams.get('offline')
    if (offline !== null && offline !== 'fail' && offline !== 'queue') throw new HttpError(400, 'invalid_query', 'offline must be fail or queue', { field: 'offline' })
    const key = req.headers['idempotency-key']
    const { record } = await commands.create(device, body, {
      fleet: fleetFor(scope, url),
      caller: scope.caller,
      ...(typeof key === 'string' ? { idempotencyKey: key } : {}),
      offlineFail: offline === 'fail'
    })
    let r = record
    if (wait !== undefined && wait > 0) {
      // a caller that disconnects takes its waiter with it: the command stays created
      const gone = abortOnClose(req, res)
      try {
        r = (await commands.wait(record.id, wait, gone.signal)) ?? record
      } finally {
        gone.release()
      }
      if (gone.signal.aborted) return 'commands' // nobody to answer
    }
    sendJson(res, r.state === 'completed' || r.state === 'rejected' ? 200 : 202, view(r))
    return 'commands'
  }
  if (path === '/v1/commands') {
    method(req, 'GET')
    const scope = deps.scope(req)
    const state = url.searchParams.get('state')
    if (state !== null && !(COMMAND_STATES as readonly string[]).includes(state)) throw new HttpError(400, 'invalid_query', `state must be one of ${COMMAND_STATES.join(', ')}`, { field: 'state' })
    const device = url.searchParams.get('device')
    const since = intParam(url, 'since', 0, Number.MAX_SAFE_INTEGER)
    const cursor = url.searchParams.get('cursor')
    const limit = intParam(url, 'limit', 1, 1000) ?? 100
    let page
    try {
      page = await commands.list(scope.fleet, { limit, ...(device !== null ? { device } : {}), ...(state !== null ? { state: state as CommandState } : {}), ...(since !== undefined ? { since } : {}), ...(cursor !== null ? { cursor } : {}) })
    } catch (e) {
      if (cursor !== null && e instanceof Error && /cursor/.test(e.message)) throw new HttpError(400, 'invalid_query', 'cursor is not one this ingest gave', { field: 'cursor' })
      throw e
    }
    sendJson(res, 200, { commands: page.commands.map(view), next: page.next })
    return 'commands'
  }
  const cm = COMMAND_PATH.exec(path)
  if (cm !== null) {
    method(req, 'GET', 'DELETE')
    const scope = deps.scope(req)
    const id = pathPart(cm[1]!, 'id')
    if (req.method === 'DELETE') {
      const { outcome, record } = await commands.cancel(id, scope.fleet)
      sendJson(res, CANCEL_STATUS[outcome], view(record))
      return 'commands'
    }
    const r = await commands.get(id, scope.fleet)
    if (r === null) throw new HttpError(404, 'not_found', `no command ${id.slice(0, 64)}`, { field: 'id' })
    sendJson(res, 200, view(r))
    return 'commands'
  }
  return null
}
