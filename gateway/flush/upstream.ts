/**
 * HTTP client for the upstream protocols (v1, v2: wire.ts picks): keep-alive, compression, timeouts, and failover
 * across several `--upstream` URLs (on a connection error, timeout or 5xx the next request
 * goes to the next URL; the answer of any of them counts, since they share one store).
 */
import http from 'node:http'
import https from 'node:https'
import { UpstreamError } from '../../protocol/index.ts'
import { compress, type Wire } from './wire.ts'

const MAX_RESPONSE_BYTES = 16 * 1024 * 1024

export type UpstreamConfig = {
  urls: string[]
  token: string
  timeoutMs: number
  maxSockets: number
}

export type UpstreamResponse = { status: number, body: Buffer, retryAfterMs: number | undefined, url: string, headers: http.IncomingHttpHeaders }

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
    this.urls = config.urls.map((u) => new URL(u.endsWith('/') ? u : u + '/'))
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets: config.maxSockets })
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: config.maxSockets })
  }

  get url (): string {
    const u = this.urls[this.index]
    return u ? u.href : ''
  }

  /** Moves to the next URL (after a failure of the current one). */
  failover (): void {
    this.index = (this.index + 1) % this.urls.length
  }

  /** POSTs a batch body to the current URL's `v{version}/batches`, compressed as `wire` says. */
  async send (body: Buffer, wire: Wire): Promise<UpstreamResponse & { sentBytes: number }> {
    const base = this.urls[this.index]!
    const url = new URL(`v${wire.version}/batches`, base)
    const payload = await compress(body, wire.encoding)
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/cbor',
      accept: 'application/cbor',
      authorization: `Bearer ${this.config.token}`,
      'content-length': payload.length
    }
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
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), retryAfterMs: parseRetryAfter(res.headers['retry-after']), url: base.href, headers: res.headers, sentBytes: payload.length }))
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
