/**
 * Admin HTTP (docs/operator.md): GET /healthz (live), /readyz (store open, broker
 * listening, upstream not failing), /status (JSON), /metrics (Prometheus text), and the
 * operator surface: the page at / (assets under /assets/), /events (live samples, SSE),
 * /devices (the devices table), /commands (the latest commands held here, newest first),
 * /dlq... (dead-letter tools, dlq-routes.ts).
 *
 * Bound to 127.0.0.1 by default; elsewhere every route but the probes needs the admin
 * token (auth.ts).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { listen } from '../listen.ts'
import { HttpError, ValidationError } from '../../protocol/index.ts'
import type { DeadLetterTools } from '../dlq/index.ts'
import { AdminAuth } from './auth.ts'
import { dlqRoute } from './dlq-routes.ts'
import { LiveSampler, type LiveStatus } from './live.ts'
import type { Metrics } from '../metrics/index.ts'
import { servePage } from './page/index.ts'
import { SseHub } from './sse.ts'

export type AdminHandlers = {
  /** `delivery` false: ready for intake only (no upstream configured) */
  ready: () => { ready: boolean, delivery?: boolean, reasons: string[] }
  status: () => Promise<unknown>
  /** the dead-letter tools of the running gateway (absent: /dlq routes answer 404) */
  dlq?: DeadLetterTools
  /** the most recently changed commands (null or absent: commands are off) */
  commands?: (limit: number, device?: string) => { total: number, commands: unknown[] } | null
}

export type AdminOptions = {
  /** the admin token; null or '' when none is needed (loopback) */
  token?: string | null
}

export class Admin {
  private constructor (private readonly server: Server, private readonly sampler: LiveSampler, private readonly sse: SseHub) {}

  get port (): number { return (this.server.address() as AddressInfo).port }

  static async create (host: string, port: number, metrics: Metrics, handlers: AdminHandlers, logger: Logger, opts: AdminOptions = {}): Promise<Admin> {
    const log = logger.child({ component: 'admin' })
    const auth = new AdminAuth(opts.token || null)
    const sampler = new LiveSampler(metrics, { status: () => handlers.status() as Promise<LiveStatus>, ready: handlers.ready })
    const sse = new SseHub(sampler)
    const server = createServer((req, res) => {
      const send = (code: number, body: string, type = 'application/json'): void => {
        res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' })
        res.end(body)
      }
      let url: URL
      try { url = new URL(req.url ?? '/', 'http://admin') } catch { send(400, JSON.stringify({ error: 'bad_request', message: 'bad URL' })); return }
      const path = url.pathname
      const run = async (): Promise<void> => {
        if (auth.check(req, res, url) === 'answered') return
        if (handlers.dlq && await dlqRoute(req, res, url, handlers.dlq)) return
        if (req.method !== 'GET' && req.method !== 'HEAD') { send(405, JSON.stringify({ error: 'method_not_allowed', message: 'only GET' })); return }
        if (servePage(req, res, path)) return
        switch (path) {
          case '/healthz': send(200, JSON.stringify({ ok: true })); return
          case '/readyz': {
            const r = handlers.ready()
            send(r.ready ? 200 : 503, JSON.stringify(r))
            return
          }
          case '/status': send(200, JSON.stringify(await handlers.status())); return
          case '/metrics': send(200, await metrics.registry.metrics(), metrics.registry.contentType); return
          case '/events': sse.open(req, res); return
          case '/live': send(200, JSON.stringify(sampler.recent())); return
          case '/devices': {
            const sort = url.searchParams.get('sort')
            send(200, JSON.stringify(metrics.devices.query({
              q: url.searchParams.get('q') ?? '',
              limit: Number(url.searchParams.get('limit') ?? 100) || 100,
              sort: sort === 'lastSeen' || sort === 'rate' ? sort : 'device'
            })))
            return
          }
          case '/commands': {
            const device = url.searchParams.get('device') ?? undefined
            const r = handlers.commands?.(Number(url.searchParams.get('limit') ?? 50) || 50, device) ?? null
            send(200, JSON.stringify({ t: Date.now(), enabled: r !== null, total: r?.total ?? 0, commands: r?.commands ?? [] }))
            return
          }
          default: send(404, JSON.stringify({ error: 'not_found', message: `no route ${path}` }))
        }
      }
      run().catch((err: Error) => {
        if (err instanceof HttpError) { if (!res.headersSent) send(err.status, JSON.stringify({ error: err.errorCode, message: err.message })); return }
        if (err instanceof ValidationError) { if (!res.headersSent) send(400, JSON.stringify({ error: 'invalid', field: err.field, message: err.message })); return }
        log.error({ err, path }, 'admin request failed')
        if (!res.headersSent) send(500, JSON.stringify({ error: 'internal', message: err.message }))
        else res.destroy()
      })
    })
    server.keepAliveTimeout = 5000
    await listen(server, port, host, '--admin-port', 'another gateway?')
    sampler.start()
    return new Admin(server, sampler, sse)
  }

  async close (): Promise<void> {
    this.sampler.stop()
    this.sse.close()
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }
}
