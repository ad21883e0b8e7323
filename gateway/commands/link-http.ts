/**
 * The command link over HTTP (docs/commands.md, "Ingest <-> gateway"): a long poll
 * `GET {upstream}/v1/gateway/commands?wait=MS` brings the commands, `POST
 * {upstream}/v1/gateway/command-reports` sends the reports. Same base URLs, token, CA and
 * client certificate as the readings' HTTP upstream (gateway/flush/http-upstream.ts), on its
 * own keep-alive agents (a poll holds a socket for up to `wait`).
 *
 * The poll loop: a 200 is decoded and handed to `onCommands`; the next poll goes out only
 * after its promise resolved (a rejection: back-off, then poll again; the ingest offers the
 * same commands until they are reported `at-gateway`). A connection error, a timeout (`wait`
 * plus a margin), a 5xx or an unreadable answer: back-off with jitter and the next URL. 401/403:
 * `auth-failed`, a poll every `--auth-retry-ms`. 404: the ingest has no command API (an older
 * one): the state says so and the next poll waits `--command-api-retry-ms`.
 */
import http from 'node:http'
import https from 'node:https'
import type { Logger } from 'pino'
import { decodeCommandsMessage, decodeReportsResponse, encodeReportsRequest, type CommandsMessage, type ReportsRequest } from '../../protocol/commands.ts'
import { Backoff, Sleeper } from '../flush/backoff.ts'
import { parseRetryAfter, type UpstreamTls } from '../flush/http-upstream.ts'
import { errorMessage } from '../flush/status-actions.ts'
import type { CommandLink, LinkState, ReportsAnswer } from './link.ts'

/** A commands message or a reports answer is at most 4 MiB (COMMAND_MESSAGE_LIMITS); a little more is read to say so. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024 + 1024
/** How much longer than `wait` a poll may take before it counts as lost. */
const POLL_MARGIN_MS = 10_000

export type HttpLinkConfig = {
  urls: string[]
  /** '' = none (the client certificate authenticates) */
  token: string
  tls?: UpstreamTls
  pollWaitMs: number
  /** reports request timeout */
  requestTimeoutMs: number
  retryBaseMs: number
  retryMaxMs: number
  /** pause after a 401/403 */
  authRetryMs: number
  /** pause after a 404 (no command API) */
  apiRetryMs: number
}

type Response = { status: number, body: Buffer, retryAfterMs: number | undefined }

export class HttpCommandLink implements CommandLink {
  private readonly urls: URL[]
  private index = 0
  private readonly httpAgent: http.Agent
  private readonly httpsAgent: https.Agent
  private readonly backoff: Backoff
  private readonly sleeper = new Sleeper()
  private readonly log: Logger
  private closed = false
  private started = false
  private poll: http.ClientRequest | null = null
  private state: LinkState['state'] = 'idle'
  private lastError: string | null = null
  private lastOkAt: number | null = null
  /** polls answered, commands messages handed over (tests, status) */
  polls = 0
  delivered = 0

  constructor (private readonly config: HttpLinkConfig, log: Logger) {
    this.log = log.child({ link: 'http' })
    this.urls = config.urls.map((u) => new URL(u.endsWith('/') ? u : u + '/'))
    this.httpAgent = new http.Agent({ keepAlive: true })
    this.httpsAgent = new https.Agent({ keepAlive: true, ...config.tls })
    this.backoff = new Backoff(config.retryBaseMs, config.retryMaxMs)
  }

  private get base (): URL { return this.urls[this.index]! }

  private failover (): void { this.index = (this.index + 1) % this.urls.length }

  start (onCommands: (m: CommandsMessage) => Promise<void>): void {
    if (this.started || this.closed) return
    this.started = true
    void this.run(onCommands).catch((err: unknown) => { this.log.error({ err }, 'command poll loop ended') })
  }

  private fail (state: 'failing' | 'auth-failed', message: string): void {
    if (message !== this.lastError || state !== this.state) this.log.warn({ url: this.base.href, state }, `command link: ${message}`)
    this.state = state
    this.lastError = message
  }

  private async run (onCommands: (m: CommandsMessage) => Promise<void>): Promise<void> {
    while (!this.closed) {
      const base = this.base
      const url = new URL(`v1/gateway/commands?wait=${this.config.pollWaitMs}`, base)
      let res: Response
      try {
        res = await this.request('GET', url, undefined, this.config.pollWaitMs + POLL_MARGIN_MS, (req) => { this.poll = req })
      } catch (err) {
        this.poll = null
        if (this.closed) return
        this.fail('failing', (err as Error).message)
        this.failover()
        await this.sleeper.sleep(this.backoff.next())
        continue
      }
      this.poll = null
      if (this.closed) return
      if (res.status === 401 || res.status === 403) {
        this.fail('auth-failed', `the ingest at ${base.origin} refused our credentials (${res.status}${msgOf(res)}); polling again in ${this.config.authRetryMs} ms`)
        await this.sleeper.sleep(this.config.authRetryMs)
        continue
      }
      if (res.status === 404) {
        this.fail('failing', `the ingest at ${base.origin} has no command API (404 on GET /v1/gateway/commands); polling again in ${this.config.apiRetryMs} ms`)
        if (this.urls.length > 1) this.failover()
        await this.sleeper.sleep(this.config.apiRetryMs)
        continue
      }
      if (res.status !== 200) {
        this.fail('failing', `the ingest at ${base.origin} answered the command poll ${res.status}${msgOf(res)}`)
        if (res.status >= 500) this.failover()
        await this.sleeper.sleep(Math.max(this.backoff.next(), res.retryAfterMs ?? 0))
        continue
      }
      let msg: CommandsMessage
      try {
        msg = decodeCommandsMessage(res.body)
      } catch (err) {
        this.fail('failing', `unreadable commands message from ${base.origin}: ${(err as Error).message}`)
        this.failover()
        await this.sleeper.sleep(this.backoff.next())
        continue
      }
      this.polls++
      if (this.state !== 'ok') this.log.info({ url: base.href, after: this.lastError }, 'command link: polling the ingest for commands')
      this.state = 'ok'
      this.lastError = null
      this.lastOkAt = Date.now()
      if (msg.commands.length === 0 && msg.recalls.length === 0) { this.backoff.reset(); continue }
      try {
        await onCommands(msg)
        this.delivered++
        this.backoff.reset()
      } catch (err) {
        if (this.closed) return
        // not stored: the ingest offers them again on the next poll
        this.log.warn({ err, commands: msg.commands.length, recalls: msg.recalls.length }, 'commands not stored; polling for them again after back-off')
        await this.sleeper.sleep(this.backoff.next())
      }
    }
  }

  async sendReports (req: ReportsRequest): Promise<ReportsAnswer> {
    if (this.closed) return { kind: 'none', error: 'the command link is closed' }
    const base = this.base
    let res: Response
    try {
      const body = encodeReportsRequest(req)
      res = await this.request('POST', new URL('v1/gateway/command-reports', base), body, this.config.requestTimeoutMs)
    } catch (err) {
      if (!this.closed && this.base === base) this.failover()
      return { kind: 'none', error: (err as Error).message }
    }
    if (res.status !== 200) {
      if (res.status >= 500 && this.base === base) this.failover()
      return { kind: 'refused', status: res.status, message: errorMessage(res.body), ...(res.retryAfterMs !== undefined ? { retryAfterMs: res.retryAfterMs } : {}) }
    }
    try {
      const answer = decodeReportsResponse(res.body)
      if (answer.batch !== req.batch) return { kind: 'none', error: `the ingest at ${base.origin} answered reports batch ${JSON.stringify(answer.batch)} to batch ${JSON.stringify(req.batch)}` }
      return { kind: 'results', results: answer.results }
    } catch (err) {
      return { kind: 'none', error: `unreadable reports answer from ${base.origin}: ${(err as Error).message}` }
    }
  }

  private async request (method: 'GET' | 'POST', url: URL, body: Buffer | undefined, timeoutMs: number, onReq?: (r: http.ClientRequest) => void): Promise<Response> {
    const headers: http.OutgoingHttpHeaders = { accept: 'application/cbor' }
    if (body !== undefined) { headers['content-type'] = 'application/cbor'; headers['content-length'] = body.length }
    if (this.config.token !== '') headers.authorization = `Bearer ${this.config.token}`
    const tls = url.protocol === 'https:'
    return await new Promise<Response>((resolve, reject) => {
      const req = (tls ? https : http).request(url, { method, headers, agent: tls ? this.httpsAgent : this.httpAgent, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = []
        let n = 0
        res.on('data', (c: Buffer) => {
          n += c.length
          if (n > MAX_RESPONSE_BYTES) { req.destroy(new Error(`answer from ${url.origin} larger than ${MAX_RESPONSE_BYTES} bytes`)); return }
          chunks.push(c)
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), retryAfterMs: parseRetryAfter(res.headers['retry-after']) }))
        res.on('error', (err) => reject(new Error(`answer from ${url.origin} broke off: ${err.message}`, { cause: err })))
      })
      req.on('timeout', () => req.destroy(new Error(`no answer from ${url.origin} within ${timeoutMs} ms`)))
      req.on('error', (err) => reject(new Error(`${method} ${url.origin}${url.pathname} failed: ${err.message}`, { cause: err })))
      onReq?.(req)
      req.end(body)
    })
  }

  status (): LinkState {
    return { state: this.state, url: this.base.href, lastError: this.lastError, lastOkAt: this.lastOkAt }
  }

  /** Aborts the poll; an `onCommands` in progress is not waited for (its outcome no longer matters). */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.poll?.destroy(new Error('the command link is closing'))
    this.sleeper.wake()
    this.httpAgent.destroy()
    this.httpsAgent.destroy()
  }
}

function msgOf (res: Response): string {
  const m = errorMessage(res.body)
  return m === '' ? '' : `: ${m.slice(0, 200)}`
}
