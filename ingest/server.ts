/**
 * HTTP front of the ingest (node:http). `POST /v1/batches` runs the named steps of
 * `batchSteps` in order: the HTTP ones (token or certificate, media type, body) around the
 * transport-free steps of pipeline.ts (decode, validate, partitions, commit, answer; fault
 * injection, when on, wraps the commit step: chaos.ts); any step may end the request by
 * throwing: an HTTP step an HttpError, a pipeline step a BatchRefusal (refusal.ts), which
 * `httpErrorOf` turns into its status (the table `REFUSAL_STATUS`), headers and JSON body.
 * Nothing a client sends can throw past `handle`: unexpected errors become 500 and are
 * logged.
 *
 * Wrong tokens: after --auth-free-failures wrong tokens from one address, its requests that
 * need a token get 429 + Retry-After without their token being looked at (auth-backoff.ts).
 *
 * Slow clients: `requestTimeoutMs` bounds the time to receive headers and body, checked
 * every second, so a slowloris connection is closed and its buffers freed.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { encodeResponse, encodeResponseV2, ENCODINGS_HEADER, PROTOCOLS_HEADER, StoreError, ValidationError } from '../protocol/index.ts'
import { addressKey, AuthBackoff } from './auth-backoff.ts'
import { readBody } from './body.ts'
import { ACCEPTED_ENCODINGS, decodeContent } from './decode.ts'
import { HttpError } from './errors.ts'
import { isPagePath, RecentReadings, servePage } from './page/index.ts'
import { answer, checkPartitions, commitStep, decode, newBatch, store, validate, type BatchCtx as PipelineCtx, type PipelineDeps, type Step as PipelineStep } from './pipeline.ts'
import { matchReadings, parseConflictQuery, parseDeviceQuery, queryReadings, queryStats } from './query.ts'
import { ALL_FLEETS, hashSecret, type ReadScope } from './read-auth.ts'
import { readiness, type CommandsMqttStatus, type MqttConsumerStatus } from './readyz.ts'
import { BatchRefusal, REFUSAL_STATUS } from './refusal.ts'
import { clientCertGateway, createHttpServer, type TlsSetup } from './tls.ts'
import type { CommandAuth } from './commands/auth.ts'
import { isCommandPath, serveCommands } from './commands/http.ts'
import type { Commands } from './commands/index.ts'

export type ServerDeps = PipelineDeps & {
  /** sha256(secret) hex -> gateway id */
  tokens: Map<string, string>
  /** HTTPS (tls.ts), or null for HTTP. */
  tls: TlsSetup | null
  /** wrong-token back-off per address (made by createIngestServer from the config if absent) */
  authBackoff?: AuthBackoff
  /** the broker consumer's state with `--mqtt-broker` (mqtt-consumer.ts), for /readyz; absent or null without */
  mqttStatus?: () => MqttConsumerStatus | null
  /** the commands' broker connection with `--mqtt-broker` (commands/mqtt.ts), for /readyz; absent or null without */
  commandsMqttStatus?: () => CommandsMqttStatus | null
  /** commands to devices (commands/): their routes are served when set */
  commands?: { commands: Commands, auth: CommandAuth }
}

/** A batch of the pipeline (its `version` from the route: `/v1/batches` or `/v2/batches`) with the HTTP exchange that brought it. */
type BatchCtx = PipelineCtx & {
  req: IncomingMessage
  res: ServerResponse
}

type Step = (ctx: BatchCtx, deps: ServerDeps) => void | Promise<void>

type Side = 'read' | 'write' | 'command'

/** 429 while the request's address is in back-off after wrong tokens (auth-backoff.ts: against token guessing). */
function holdBack (req: IncomingMessage, deps: ServerDeps, side: Side): void {
  const ms = deps.authBackoff?.bannedFor(addressKey(req.socket.remoteAddress)) ?? 0
  if (ms === 0) return
  deps.metrics.authThrottled.inc({ side })
  const s = Math.ceil(ms / 1000)
  throw new HttpError(429, 'too_many_failures', `too many wrong tokens from this address: its requests are not checked for ${s} s`, { field: 'authorization', headers: { 'retry-after': String(s) }, closeConnection: true })
}

/** Counts a wrong token against the request's address; logs when that starts a back-off. */
function wrongToken (req: IncomingMessage, deps: ServerDeps, side: Side): void {
  deps.metrics.authFailures.inc({ side })
  if (!deps.authBackoff) return
  const key = addressKey(req.socket.remoteAddress)
  const banMs = deps.authBackoff.fail(key)
  deps.metrics.authBackoffAddresses.set(deps.authBackoff.tracked)
  if (banMs > 0) deps.log.warn({ remote: key, side, banMs }, 'wrong tokens from one address: back-off')
}

/**
 * The gateway a request authenticates as: a verified client certificate (its CN, listed in
 * the tokens config) or a gateway's bearer token; else 401/403. Used by the batches and by
 * the command routes of the gateways (commands/http.ts).
 */
export function authenticateGateway (req: IncomingMessage, deps: ServerDeps): string {
  const h = req.headers.authorization
  const certGw = clientCertGateway(req) // verified client certificate: CN = gateway id (tls.ts)
  if (certGw === undefined) holdBack(req, deps, 'write') // a certificate is not a guess: never held back
  const m = h === undefined ? null : /^Bearer +(\S+) *$/i.exec(h)
  const gw = m ? deps.tokens.get(hashSecret(m[1]!)) : undefined
  if (certGw !== undefined) {
    if (!deps.readAuth.isKnownGateway(certGw)) throw new HttpError(403, 'forbidden', `client certificate CN ${JSON.stringify(certGw.slice(0, 64))} is not a gateway of the tokens config`, { field: 'certificate' })
    if (h !== undefined && gw !== certGw) throw new HttpError(403, 'forbidden', `the bearer token does not belong to gateway ${certGw} of the client certificate`, { field: 'authorization' })
    return certGw
  }
  if (gw === undefined) {
    if (h !== undefined) wrongToken(req, deps, 'write')
    throw new HttpError(401, 'unauthorized', h === undefined ? 'missing authorization: Bearer token' : 'unknown token', { field: 'authorization', headers: { 'www-authenticate': 'Bearer' }, closeConnection: true })
  }
  return gw
}

function authenticate (ctx: BatchCtx, deps: ServerDeps): void {
  ctx.gateway = authenticateGateway(ctx.req, deps)
}

function checkMediaType (ctx: BatchCtx): void {
  const ct = (ctx.req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (ct !== 'application/cbor') throw new HttpError(415, 'unsupported_media_type', `content-type must be application/cbor, got ${JSON.stringify(ct.slice(0, 60))}`, { field: 'content-type', closeConnection: true })
}

async function readRequestBody (ctx: BatchCtx, deps: ServerDeps): Promise<void> {
  ctx.raw = await readBody(ctx.req, deps.config.maxBodyBytes)
  const enc = (ctx.req.headers['content-encoding'] ?? 'identity').trim().toLowerCase()
  deps.metrics.receivedBytes.inc({ encoding: ['gzip', 'deflate', 'br'].includes(enc) ? enc : 'identity', version: String(ctx.version) }, ctx.raw.length)
}

async function decompress (ctx: BatchCtx, deps: ServerDeps): Promise<void> {
  ctx.body = await decodeContent(ctx.raw, ctx.req.headers['content-encoding'], deps.config.maxBodyBytes)
}

function authorizeGateway (ctx: BatchCtx): void {
  if (ctx.batch.gateway !== ctx.gateway) {
    throw new HttpError(403, 'forbidden', `the token belongs to gateway ${ctx.gateway}, the batch says ${JSON.stringify(ctx.batch.gateway)}`, { field: 'gateway' })
  }
}

function respond (ctx: BatchCtx): void {
  const res = answer(ctx)
  if (res === null) { ctx.req.socket.destroy(); return } // fault injection: committed, the answer is lost
  const body = ctx.version === 2 ? encodeResponseV2(res) : encodeResponse(res)
  ctx.res.writeHead(200, { 'content-type': 'application/cbor', 'content-length': body.length })
  ctx.res.end(body)
}

/**
 * The steps of one batch request: the HTTP ones around the shared steps of pipeline.ts;
 * `commit` is `store`, or `store` wrapped in fault injection (chaos.ts) when chaos is on.
 */
export function batchSteps (commit: PipelineStep = store): readonly Step[] {
  return [authenticate, checkMediaType, readRequestBody, decompress, decode, authorizeGateway, validate, checkPartitions, commit, respond]
}

function sendJson (res: ServerResponse, status: number, obj: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return
  const body = JSON.stringify(obj)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers })
  res.end(body)
}

/**
 * A pipeline step's refusal as this front answers it: the status of `REFUSAL_STATUS` (the
 * one the MQTT results message carries, mqtt-consumer.ts `resultsRefusal`), a Retry-After
 * in whole seconds when the refusal says when to retry, and the JSON body of every error.
 * A body over the limit after decompression closes the connection, as one over it on the
 * wire does (body.ts).
 */
export function httpErrorOf (r: BatchRefusal): HttpError {
  return new HttpError(REFUSAL_STATUS[r.kind], r.errorCode, r.message, {
    ...(r.field !== undefined ? { field: r.field } : {}),
    headers: r.retryAfterMs === undefined ? {} : { 'retry-after': String(Math.ceil(r.retryAfterMs / 1000)) },
    closeConnection: r.errorCode === 'body_too_large',
    cause: r
  })
}

function sendError (res: ServerResponse, err: HttpError): void {
  const headers = { ...err.headers, ...(err.closeConnection ? { connection: 'close' } : {}) }
  sendJson(res, err.status, { error: err.errorCode, message: err.message, ...(err.field ? { field: err.field } : {}) }, headers)
}

export type IngestServer = {
  server: Server
  /** Requests being handled right now (all routes). */
  inFlight: () => number
  /**
   * Stops accepting, answers in-flight requests with `connection: close` so their sockets
   * close once answered, and after timeoutMs closes whatever is still open.
   */
  stop: (timeoutMs: number) => Promise<void>
}

export function createIngestServer (deps: ServerDeps): IngestServer {
  const { config, metrics, log } = deps
  deps.recent ??= new RecentReadings()
  const steps = batchSteps(commitStep(deps.chaos))
  deps.authBackoff ??= new AuthBackoff({ freeFailures: config.authFreeFailures, baseMs: config.authBackoffBaseMs, maxMs: config.authBackoffMaxMs, maxAddresses: config.authTrackedAddresses })
  let inFlight = 0
  let batchesInFlight = 0
  let stopping = false
  const active = new Set<ServerResponse>()
  // protocol negotiation (docs/protocol-v2.md): every answer names the versions and body
  // encodings this ingest takes, so a gateway upgrades (or falls back) on its next batch
  const speaksV2 = config.protocols.includes('2')
  const capabilities = { protocols: speaksV2 ? [1, 2] : [1], encodings: ACCEPTED_ENCODINGS }
  const advertise = speaksV2 ? { [PROTOCOLS_HEADER]: '1, 2', [ENCODINGS_HEADER]: capabilities.encodings.join(', ') } : {}

  async function handleBatch (req: IncomingMessage, res: ServerResponse, version: 1 | 2): Promise<void> {
    if (batchesInFlight >= config.maxConcurrentRequests) {
      metrics.rejectedBatches.inc({ reason: 'busy' })
      throw new HttpError(503, 'busy', `more than ${config.maxConcurrentRequests} batches in progress`, { headers: { 'retry-after': '1' }, closeConnection: true })
    }
    batchesInFlight++
    metrics.inFlight.inc()
    try {
      const ctx = { ...newBatch('', version), req, res } as BatchCtx
      for (const step of steps) await step(ctx, deps)
      log.debug({ gateway: ctx.gateway, batch: ctx.batch.batch, items: ctx.results.length }, 'batch answered')
    } finally {
      batchesInFlight--
      metrics.inFlight.dec()
    }
  }

  async function route (req: IncomingMessage, res: ServerResponse, url: URL): Promise<string> {
    const path = url.pathname
    const version = path === '/v1/batches' ? 1 : path === '/v2/batches' && speaksV2 ? 2 : 0
    if (version !== 0) {
      if (req.method !== 'POST') throw new HttpError(405, 'method_not_allowed', 'use POST', { headers: { allow: 'POST' } })
      await handleBatch(req, res, version)
      return 'batches'
    }
    if (deps.commands !== undefined) {
      const { commands, auth } = deps.commands
      const name = await serveCommands(req, res, url, {
        commands,
        auth,
        authenticateGateway: (r) => authenticateGateway(r, deps),
        scope: (r) => {
          holdBack(r, deps, 'command')
          try {
            return auth.scope(r)
          } catch (e) {
            if (e instanceof HttpError && e.status === 401 && r.headers.authorization !== undefined) wrongToken(r, deps, 'command')
            throw e
          }
        },
        fleetOf: (gw) => deps.readAuth.fleetOf(gw),
        maxBodyBytes: config.maxBodyBytes
      })
      if (name !== null) return name
    } else if (isCommandPath(path)) {
      throw new HttpError(501, 'commands_unavailable', 'this server was made without commands to devices (createIngest always has them; docs/commands.md)')
    }
    if (path === '/v1/capabilities') { sendJson(res, 200, capabilities); return 'capabilities' }
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'method_not_allowed', 'use GET', { headers: { allow: 'GET' } })
    if (path === '/healthz') { sendJson(res, 200, { status: 'ok' }); return 'healthz' }
    if (path === '/readyz') { const r = await readiness(deps); sendJson(res, r.ok ? 200 : 503, r.body); return 'readyz' }
    const { readAuth } = deps
    const readScope = (r: IncomingMessage): ReadScope => {
      holdBack(r, deps, 'read')
      try {
        return readAuth.scope(r)
      } catch (e) {
        if (e instanceof HttpError && e.status === 401 && r.headers.authorization !== undefined) wrongToken(r, deps, 'read')
        throw e
      }
    }
    if (path === '/metrics') {
      readAuth.requireAllFleets(readScope(req), '/metrics')
      const text = await metrics.registry.metrics()
      res.writeHead(200, { 'content-type': metrics.registry.contentType })
      res.end(text)
      return 'metrics'
    }
    if (isPagePath(path)) { await servePage(req, res, url, { sink: deps.sink, metrics, recent: deps.recent!, readAuth, scope: readScope, ...(deps.commands ? { commands: deps.commands.commands } : {}) }); return path === '/ui/live' ? 'live' : 'page' }
    if (path === '/v1/stats') {
      const scope = readScope(req)
      const stats = readAuth.scopeStats(await queryStats(deps.sink), scope)
      // commands by state: the store counts every fleet's, so fleet * only
      const commands = deps.commands !== undefined && scope.fleet === ALL_FLEETS ? { commands: await deps.commands.commands.store.counts() } : {}
      sendJson(res, 200, { ...stats, ...commands })
      return 'stats'
    }
    if (path === '/v1/conflicts') {
      const scope = readScope(req)
      const q = parseConflictQuery(url.searchParams)
      sendJson(res, 200, await deps.sink.queryConflicts({ ...q, ...(scope.fleet === ALL_FLEETS ? {} : { fleet: scope.fleet }) }))
      return 'conflicts'
    }
    const device = matchReadings(path)
    if (device !== null) {
      const scope = readScope(req)
      const { gateway, ...q } = parseDeviceQuery(device, url.searchParams)
      const gateways = readAuth.gateways(scope, gateway)
      sendJson(res, 200, await queryReadings(deps.sink, { ...q, ...(gateways ? { gateways } : {}), maxBytes: config.maxResponseBytes }))
      return 'readings'
    }
    throw new HttpError(404, 'not_found', `no route ${path.slice(0, 100)}`)
  }

  async function handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = process.hrtime.bigint()
    inFlight++
    active.add(res)
    if (stopping) res.setHeader('connection', 'close')
    for (const [k, v] of Object.entries(advertise)) res.setHeader(k, v)
    let routeName = 'other'
    try {
      const url = new URL(req.url ?? '/', 'http://ingest')
      routeName = url.pathname === '/v1/batches' || url.pathname === '/v2/batches' ? 'batches' : matchReadings(url.pathname) !== null ? 'readings' : url.pathname.slice(0, 40)
      routeName = await route(req, res, url)
    } catch (e) {
      let err: HttpError
      if (e instanceof HttpError) err = e
      else if (e instanceof BatchRefusal) err = httpErrorOf(e)
      else if (e instanceof ValidationError) err = new HttpError(400, 'invalid_query', e.message, { field: e.field })
      else if (e instanceof StoreError) err = new HttpError(503, 'store_unavailable', e.message, { headers: { 'retry-after': '1' } })
      else {
        log.error({ err: e, url: req.url }, 'request failed unexpectedly')
        err = new HttpError(500, 'internal', 'internal error')
      }
      if (routeName === 'batches') {
        metrics.rejectedBatches.inc({ reason: err.errorCode })
        if (err.status < 500 || err.errorCode === 'store_unavailable') log.warn({ status: err.status, error: err.errorCode, field: err.field, reason: err.message.slice(0, 300), remote: req.socket.remoteAddress }, 'batch refused')
      }
      sendError(res, err)
    } finally {
      inFlight--
      active.delete(res)
      const known = ['batches', 'readings', 'conflicts', 'stats', 'live', 'metrics', 'healthz', 'readyz', 'capabilities', 'commands', 'gateway-commands', 'command-reports'].includes(routeName) ? routeName : 'other'
      metrics.requests.inc({ route: known, status: res.headersSent ? String(res.statusCode) : 'dropped' })
      metrics.requestSeconds.observe({ route: known }, Number(process.hrtime.bigint() - t0) / 1e9)
    }
  }

  const server = createHttpServer({
    requestTimeout: config.requestTimeoutMs,
    headersTimeout: config.requestTimeoutMs,
    connectionsCheckingInterval: Math.min(1000, config.requestTimeoutMs),
    keepAliveTimeout: 5000
  }, deps.tls, (req, res) => { void handle(req, res) })
  server.on('clientError', (err, socket) => {
    // Malformed HTTP or a timed-out slow client: answer if we still can, then close.
    const code = (err as NodeJS.ErrnoException).code ?? ''
    if (socket.writable && !code.startsWith('ECONN')) {
      const status = code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
      socket.end(`HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`)
      setTimeout(() => socket.destroy(), 1000).unref() // a client that never closes its side
    } else socket.destroy()
  })

  return {
    server,
    inFlight: () => inFlight,
    stop: async (timeoutMs) => {
      stopping = true
      for (const res of active) if (!res.headersSent) res.setHeader('connection', 'close')
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      server.closeIdleConnections()
      let timer: NodeJS.Timeout | undefined
      await Promise.race([closed, new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs) })])
      clearTimeout(timer)
      server.closeAllConnections()
      await closed
    }
  }
}
