/** One HTTP or HTTPS request on a fresh connection (tests of the ingest's TLS and read side). */
import { request as httpRequest } from 'node:http'
import { request as httpsRequest } from 'node:https'

export type Answer = { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer }
export type TlsOpts = { ca?: string, cert?: string, key?: string }

export function call (url: string, opts: { method?: string, headers?: Record<string, string | number>, body?: Buffer, tls?: TlsOpts } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const u = new URL(url)
    const req = (u.protocol === 'https:' ? httpsRequest : httpRequest)(u, {
      method: opts.method ?? (opts.body ? 'POST' : 'GET'),
      headers: opts.headers,
      agent: false,
      ...(u.protocol === 'https:' ? { servername: 'localhost', ...opts.tls } : {})
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

export const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` })

export function jsonOf<T = Record<string, unknown>> (a: Answer): T {
  return JSON.parse(a.body.toString('utf8')) as T
}
