/**
 * The HTTP upstream: POSTs each batch to an ingest (upstream protocols v1, v2: wire.ts
 * picks) and turns the HTTP answer into an Answer (answer.ts): a 200's per-item results, a
 * refusal by its status (status-actions.ts), or no answer. Keep-alive, compression, timeouts, and failover
 * across several `--upstream` URLs (on a connection error, timeout or 5xx the next request
 * goes to the next URL; the answer of any of them counts, since they share one store).
 * With `spread`, partition p starts at URL p mod N instead of all at the current one, so
 * several stateless ingest processes share the load; a URL that failed is skipped for
 * FAILED_URL_PAUSE_MS and its partitions move to the next one (docs/postgres.md).
 *
 * https: the server certificate is checked against `tls.ca` (`--upstream-ca`) or the
 * system CAs, and `tls.cert`/`tls.key` (`--upstream-cert`/`--upstream-key`) are presented
 * when the ingest asks for a client certificate (mTLS: its CN names the gateway). Without
 * a token (certificate-only authentication) no authorization header is sent.
 */
import http from 'node:http'
import https from 'node:https'
import { UpstreamError } from '../../protocol/index.ts'
import type { Answer, BatchUpstream, OutgoingBatch } from './answer.ts'
import { errorMessage, refusalOf } from './status-actions.ts'
import { compress, decodeAnswer, type CompressionChoice, type Wire } from './wire.ts'

const MAX_RESPONSE_BYTES = 16 * 1024 * 1024
const FAILED_URL_PAUSE_MS = 2000

export type UpstreamTls = { ca?: Buffer, cert?: Buffer, key?: Buffer }

export type UpstreamConfig = {
  urls: string[]
  /** '' = none (the client certificate authenticates). */
  token: string
  tls?: UpstreamTls
  timeoutMs: number
  maxSockets: number
  /** Spread partitions over the URLs (else: all on one, the others standby). */
  spread?: boolean
}

export type UpstreamResponse = { status: number, body: Buffer, retryAfterMs: number | undefined, url: string, headers: http.IncomingHttpHeaders }

export function parseRetryAfter (v: string | string[] | undefined, now = Date.now()): number | undefined {
  if (typeof v !== 'string' || v === '') return undefined
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000
  const t = Date.parse(v)
  return Number.isNaN(t) ? undefined : Math.max(0, t - now)
}

export class HttpUpstream implements BatchUpstream {
  private index = 0
  private readonly httpAgent: http.Agent
  private readonly httpsAgent: https.Agent
  private readonly urls: URL[]
  private readonly pausedUntil: number[]
  /** URL index each partition used last (spread mode). */
  private readonly lastPick = new Map<number, number>()

  constructor (private readonly config: UpstreamConfig, readonly batching: { compression: CompressionChoice, batchMaxBytes: number }) {
    this.urls = config.urls.map((u) => new URL(u.endsWith('/') ? u : u + '/'))
    this.pausedUntil = this.urls.map(() => 0)
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets: config.maxSockets })
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: config.maxSockets, ...config.tls })
  }

  get url (): string {
    const u = this.urls[this.index]
    return u ? u.href : ''
  }

  /** Moves to the next URL (after a failure of the current one, or of partition p's in spread mode). */
  failover (p = 0): void {
    if (!this.config.spread) { this.index = (this.index + 1) % this.urls.length; return }
    const i = this.lastPick.get(p)
    if (i !== undefined) this.pausedUntil[i] = performance.now() + FAILED_URL_PAUSE_MS
  }

  /** The base URL partition p's next request goes to. */
  pick (p: number): string {
    if (!this.config.spread) return this.urls[this.index]!.href
    const n = this.urls.length
    const now = performance.now()
    let i = p % n
    for (let k = 0; k < n; k++) if (this.pausedUntil[(p + k) % n]! <= now) { i = (p + k) % n; break }
    this.lastPick.set(p, i)
    return this.urls[i]!.href
  }

  start (): void {}

  /** POSTs the batch to its URL and reads the answer: never rejects. */
  async send (batch: OutgoingBatch): Promise<Answer> {
    let res: UpstreamResponse & { sentBytes: number }
    try {
      res = await this.post(batch.body, batch.wire, batch.url)
    } catch (err) {
      return { kind: 'none', error: err as Error }
    }
    return answerOf(batch.wire, res)
  }

  /** POSTs a batch body to `base`'s `v{version}/batches` (base from `pick`), compressed as `wire` says. */
  private async post (body: Buffer, wire: Wire, base: string): Promise<UpstreamResponse & { sentBytes: number }> {
    const url = new URL(`v${wire.version}/batches`, base)
    const payload = await compress(body, wire.encoding)
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/cbor',
      accept: 'application/cbor',
      'content-length': payload.length
    }
    if (this.config.token !== '') headers.authorization = `Bearer ${this.config.token}`
    if (wire.encoding !== 'identity') headers['content-encoding'] = wire.encoding
    const mod = url.protocol === 'https:' ? https : http
    return await new Promise((resolve, reject) => {
      const req = mod.request(url, { method: 'POST', headers, agent: url.protocol === 'https:' ? this.httpsAgent : this.httpAgent, timeout: this.config.timeoutMs }, (res) => {
        const chunks: Buffer[] = []
        let n = 0
        res.on('data', (c: Buffer) => {
          n += c.length
          if (n > MAX_RESPONSE_BYTES) { req.destroy(new UpstreamError(`response larger than ${MAX_RESPONSE_BYTES} bytes`, { status: 0 })); return }
          chunks.push(c)
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), retryAfterMs: parseRetryAfter(res.headers['retry-after']), url: base, headers: res.headers, sentBytes: payload.length }))
        res.on('error', (err) => reject(new UpstreamError(`response from ${url.origin} broke off: ${err.message}`, { status: 0, cause: err })))
      })
      req.on('timeout', () => req.destroy(new UpstreamError(`no response from ${url.origin} within ${this.config.timeoutMs} ms`, { status: 0 })))
      req.on('error', (err) => reject(err instanceof UpstreamError ? err : new UpstreamError(`request to ${url.origin} failed: ${err.message}`, { status: 0, cause: err })))
      req.end(payload)
    })
  }

  close (): void {
    this.httpAgent.destroy()
    this.httpsAgent.destroy()
  }
}

/**
 * An HTTP answer in the flusher's words: 200 with per-item results, any other status a
 * refusal (status-actions.ts), an unreadable 200 body garbled. The acknowledgment-path
 * simulation answers through this too, so it exercises the same mapping.
 */
export function answerOf (wire: Wire, res: UpstreamResponse & { sentBytes: number }): Answer {
  const heard = { url: res.url, sentBytes: res.sentBytes, offers: res.headers }
  if (res.status !== 200) {
    return { ...heard, kind: 'refused', reason: refusalOf(res.status), message: errorMessage(res.body), label: String(res.status), ...(res.retryAfterMs !== undefined ? { retryAfterMs: res.retryAfterMs } : {}) }
  }
  try {
    return { ...heard, kind: 'results', results: decodeAnswer(wire, res.body).results }
  } catch (err) {
    return { ...heard, kind: 'garbled', error: new Error(`unreadable 200 response from ${res.url}: ${(err as Error).message}`, { cause: err }) }
  }
}
