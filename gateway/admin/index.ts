/**
 * Admin HTTP (docs/design.md section 9): GET /healthz (live), /readyz (store open, broker
 * listening, upstream not failing), /status (JSON), /metrics (Prometheus text).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { listen } from '../listen.ts'
import type { Metrics } from './metrics.ts'

export type AdminHandlers = {
  ready: () => { ready: boolean, reasons: string[] }
  status: () => Promise<unknown>
}

export class Admin {
  private constructor (private readonly server: Server) {}

  get port (): number { return (this.server.address() as AddressInfo).port }

  static async create (host: string, port: number, metrics: Metrics, handlers: AdminHandlers, logger: Logger): Promise<Admin> {
    const log = logger.child({ component: 'admin' })
    const server = createServer((req, res) => {
      const send = (code: number, body: string, type = 'application/json'): void => {
        res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store' })
        res.end(body)
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') { send(405, JSON.stringify({ error: 'method_not_allowed', message: 'only GET' })); return }
      const path = (req.url ?? '/').split('?')[0]
      const run = async (): Promise<void> => {
        switch (path) {
          case '/healthz': send(200, JSON.stringify({ ok: true })); return
          case '/readyz': {
            const r = handlers.ready()
            send(r.ready ? 200 : 503, JSON.stringify(r))
            return
          }
          case '/status': send(200, JSON.stringify(await handlers.status())); return
          case '/metrics': send(200, await metrics.registry.metrics(), metrics.registry.contentType); return
          default: send(404, JSON.stringify({ error: 'not_found', message: `no route ${path}` }))
        }
      }
      run().catch((err: Error) => {
        log.error({ err, path }, 'admin request failed')
        if (!res.headersSent) send(500, JSON.stringify({ error: 'internal', message: err.message }))
      })
    })
    server.keepAliveTimeout = 5000
    await listen(server, port, host, '--admin-port', 'another gateway?')
    return new Admin(server)
  }

  async close (): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }
}
