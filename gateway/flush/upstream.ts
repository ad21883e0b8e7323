/**
 * HTTP client for upstream protocol v1: keep-alive, optional gzip, timeouts, and failover
 * across several `--upstream` URLs (on a connection error, timeout or 5xx the next request
 * goes to the next URL; the answer of any of them counts, since they share one store).
 *
 * https: the server certificate is checked against `tls.ca` (`--upstream-ca`) or the
 * system CAs, and `tls.cert`/`tls.key` (`--upstream-cert`/`--upstream-key`) are presented
 * when the ingest asks for a client certificate (mTLS: its CN names the gateway). Without
 * a token (certificate-only authentication) no authorization header is sent.
 */
import http from 'node:http'
import https from 'node:https'
import { gzip as gzipCb } from 'node:zlib'
import { promisify } from 'node:util'
import { UpstreamError } from '../../protocol/index.ts'

const gzip = promisify(gzipCb)
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024

export type UpstreamTls = { ca?: Buffer, cert?: Buffer, key?: Buffer }

export type UpstreamConfig = {
  urls: string[]
  /** '' = none (the client certificate authenticates). */
  token: string
  tls?: UpstreamTls
  timeoutMs: number
  gzip: boolean
  maxSockets: number
}

export type UpstreamResponse = { status: number, body: Buffer, retryAfterMs: number | undefined, url: string }

export function parseRetryAfter (v: string | string[] | undefined, now = Date.now()): number | undefined {
  if (typeof v !== 'string' || v === '') return undefined
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000
  const t = Date.parse(v)
  return Number.isNaN(t) ? undefined : Math.max(0, t - now)
}

export class Upstream {
  private index = 0
  private readonly httpAgent: http.Agent
  private readonly httpsAgent: https.Agent
  private readonly urls: URL[]

  constructor (private readonly config: UpstreamConfig) {
    this.urls = config.urls.map((u) => new URL('v1/batches', u.endsWith('/') ? u : u + '/'))
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets: config.maxSockets })
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: config.maxSockets, ...config.tls })
  }

  get url (): string {
    const u = this.urls[this.index]
    return u ? u.origin + u.pathname : ''
  }

  /** Moves to the next URL (after a failure of the current one). */
  failover (): void {
    this.index = (this.index + 1) % this.urls.length
  }

  async send (body: Buffer): Promise<UpstreamResponse & { sentBytes: number }> {
    const url = this.urls[this.index]!
    const payload = this.config.gzip ? await gzip(body) : body
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/cbor',
      accept: 'application/cbor',
      'content-length': payload.length
    }
    if (this.config.token !== '') headers.authorization = `Bearer ${this.config.token}`
    if (this.config.gzip) headers['content-encoding'] = 'gzip'
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
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), retryAfterMs: parseRetryAfter(res.headers['retry-after']), url: url.origin, sentBytes: payload.length }))
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
