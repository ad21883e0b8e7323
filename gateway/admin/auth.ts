/**
 * Admin access control. The admin server binds 127.0.0.1 by default; bound anywhere else
 * it needs a token (config.ts refuses to start without one), and then every route but
 * /healthz and /readyz (probes) needs it:
 *
 * - `authorization: Bearer TOKEN` (curl, Prometheus `authorization.credentials`, the CLI);
 * - the `gw_admin` cookie, set when the page is opened once as `/?token=TOKEN` (the server
 *   answers with the cookie and a redirect to `/`, so the token leaves the address bar and
 *   history; HttpOnly, SameSite=Strict: other sites' pages cannot send it).
 *
 * Mutating requests (POST) also need `content-type: application/json` and, when the browser
 * sends an Origin, one equal to the Host they were sent to: a page on another origin cannot
 * send that without a CORS preflight this server never grants (CSRF).
 *
 * Without a token (loopback-bound, the default) that Origin = Host rule is not enough: with
 * DNS rebinding, `rebind.example` first resolves to the attacker and then to 127.0.0.1, so the
 * attacker's page sends Host and Origin `rebind.example:8081`, equal to each other, and
 * reads or purges the DLQ. So every route but the probes then needs a
 * Host naming this server by a loopback name, `127.0.0.1:PORT`, `localhost:PORT` or
 * `[::1]:PORT` (protocol/loopback.ts; PORT = the port the request arrived on, no port = 80),
 * else 421; and an Origin, when sent, must be `http://` one of those, else 403. An IP
 * literal or `localhost` cannot be re-pointed by DNS, so a page under such an origin is
 * this server's own. With a token, the token is the defence and any Host is fine (behind a
 * proxy, on a LAN address).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { isLoopback, splitHostHeader } from '../../protocol/loopback.ts'

export const COOKIE = 'gw_admin'
const OPEN = new Set(['/healthz', '/readyz'])

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

export class AdminAuth {
  private readonly want: Buffer | null

  constructor (token: string | null) {
    this.want = token ? digest(token) : null
  }

  get required (): boolean { return this.want !== null }

  private matches (candidate: string | undefined): boolean {
    if (this.want === null) return true
    return candidate !== undefined && candidate.length > 0 && timingSafeEqual(digest(candidate), this.want)
  }

  /**
   * Decides a request: 'ok' (go on), or it answered itself (401 page or JSON, or the
   * cookie-setting redirect) and returns 'answered'.
   */
  check (req: IncomingMessage, res: ServerResponse, url: URL): 'ok' | 'answered' {
    if (OPEN.has(url.pathname)) return 'ok'
    if (this.want === null) {
      const refused = loopbackOriginProblem(req)
      if (refused === null) return 'ok'
      res.writeHead(refused.status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
      res.end(JSON.stringify({ error: refused.error, message: refused.message, field: refused.field }))
      return 'answered'
    }
    const bearer = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '')?.[1]
    if (this.matches(bearer) || this.matches(cookieValue(req.headers.cookie, COOKIE))) return 'ok'
    const q = url.searchParams.get('token') ?? undefined
    if (url.pathname === '/' && q !== undefined && this.matches(q)) {
      res.writeHead(303, {
        location: '/',
        'set-cookie': `${COOKIE}=${encodeURIComponent(q)}; HttpOnly; SameSite=Strict; Path=/`,
        'cache-control': 'no-store'
      })
      res.end()
      return 'answered'
    }
    if (url.pathname === '/') {
      res.writeHead(401, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
      res.end(LOGIN_PAGE(q !== undefined))
    } else {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer', 'cache-control': 'no-store' })
      res.end(JSON.stringify({ error: 'unauthorized', message: 'the admin API needs its token: authorization: Bearer TOKEN (see --admin-token)' }))
    }
    return 'answered'
  }
}

/** A Host (or Origin authority) naming this server by loopback: loopback name or IP literal, and the port the request came in on. */
function isOwnLoopbackAuthority (authority: string, port: number | undefined): boolean {
  const hp = splitHostHeader(authority)
  return hp !== null && isLoopback(hp.host) && (hp.port ?? 80) === port
}

type Refusal = { status: 421 | 403, error: string, message: string, field: 'host' | 'origin' }

/**
 * Without an admin token: null when Host (and Origin, if sent) name this loopback server,
 * else the refusal (DNS rebinding: a page of another origin must not reach the DLQ).
 */
export function loopbackOriginProblem (req: IncomingMessage): Refusal | null {
  const port = req.socket.localPort
  const allowed = `127.0.0.1:${port}, localhost:${port} or [::1]:${port}`
  const host = req.headers.host ?? ''
  if (!isOwnLoopbackAuthority(host, port)) {
    return { status: 421, error: 'misdirected_request', field: 'host', message: `Host ${JSON.stringify(host.slice(0, 100))} is not this admin server: without --admin-token it answers only to ${allowed} (DNS rebinding guard)` }
  }
  const origin = req.headers.origin
  if (origin === undefined) return null
  let ok = false
  try {
    const u = new URL(origin)
    ok = u.protocol === 'http:' && u.origin === origin && isOwnLoopbackAuthority(u.host, port)
  } catch {}
  return ok ? null : { status: 403, error: 'forbidden', field: 'origin', message: `Origin ${JSON.stringify(origin.slice(0, 100))} refused: without --admin-token only pages from http://${allowed} may call the admin API` }
}

/** Null when a mutating request may go on, else why not. */
export function csrfProblem (req: IncomingMessage): string | null {
  const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (ct !== 'application/json') return 'content-type must be application/json'
  const origin = req.headers.origin
  if (origin !== undefined && origin !== 'null') {
    let host: string
    try { host = new URL(origin).host } catch { return 'bad Origin header' }
    if (host !== req.headers.host) return `cross-origin request from ${origin} refused`
  } else if (origin === 'null') return 'opaque origin refused'
  return null
}

export function cookieValue (header: string | undefined, name: string): string | undefined {
  if (!header) return undefined
  for (const part of header.split(';')) {
    const i = part.indexOf('=')
    if (i > 0 && part.slice(0, i).trim() === name) {
      try { return decodeURIComponent(part.slice(i + 1).trim()) } catch { return undefined }
    }
  }
  return undefined
}

const LOGIN_PAGE = (wrong: boolean): string => `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Gateway admin: token needed</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{font:15px system-ui,sans-serif;margin:4rem auto;max-width:28rem;color:#1d2733}input,button{font:inherit;padding:.4rem .6rem}p.err{color:#b3261e}</style></head>
<body><h1>Gateway admin</h1><p>This admin server is not bound to loopback, so it needs the token given to the gateway with <code>--admin-token</code> or <code>--admin-token-file</code>.</p>
${wrong ? '<p class="err">That token is not right.</p>' : ''}<form method="get" action="/"><input type="password" name="token" placeholder="admin token" autofocus required> <button>Open</button></form></body></html>`
