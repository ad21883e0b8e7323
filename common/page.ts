/**
 * The static part of the two operator pages (the gateway's admin page and the ingest's
 * page): a page's own files (index.html at `/`, the rest at `/assets/<name>`) plus the
 * browser files both pages share from the repository's web/ folder (chart.js, base.css),
 * read on first use and served from memory with an ETag. No CDN, no build step: plain
 * browser JavaScript; `npm run build` copies these files next to the compiled code
 * (scripts/copy-assets.mjs), keeping their paths, so the URLs below hold in dist/ too.
 *
 * Files are read only when a page path is asked for: any other route (the probes,
 * /metrics) never reads them, so a build without them (a `tsc` run without the copy step)
 * still answers /readyz; the page itself then fails with the missing file's name.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'

type Asset = { body: Buffer, type: string, etag: string }

/** web/ (shared by both pages), relative to this file in a checkout and in dist/. */
const WEB = new URL('../web/', import.meta.url)
const WEB_FILES = ['chart.js', 'base.css']

const TYPES: Record<string, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8'
}

function load (url: URL): Asset {
  const body = readFileSync(url)
  const type = TYPES[url.pathname.slice(url.pathname.lastIndexOf('.') + 1)] ?? 'application/octet-stream'
  return { body, type, etag: '"' + createHash('sha1').update(body).digest('base64url').slice(0, 16) + '"' }
}

export type StaticPage = {
  /** True for the page's own paths (`/` and its assets). */
  has: (path: string) => boolean
  /** Serves a page file; false when `path` is not one (nothing is read or written then). */
  serve: (req: IncomingMessage, res: ServerResponse, path: string) => boolean
  /** Total bytes of the page and its assets (docs and the size test). */
  bytes: () => number
}

/**
 * A page whose files are in `dir` (a directory URL, e.g. `new URL('./', import.meta.url)`):
 * `index.html` at `/`, each name of `assets` at `/assets/<name>`, and web/'s shared files.
 */
export function staticPage (dir: URL, assets: readonly string[]): StaticPage {
  // URL path -> file; only these paths touch the files
  const files = new Map<string, URL>([
    ['/', new URL('index.html', dir)],
    ...assets.map((f): [string, URL] => ['/assets/' + f, new URL(f, dir)]),
    ...WEB_FILES.map((f): [string, URL] => ['/assets/' + f, new URL(f, WEB)])
  ])
  let loaded: Map<string, Asset> | null = null
  const all = (): Map<string, Asset> => {
    loaded ??= new Map([...files].map(([path, url]) => [path, load(url)]))
    return loaded
  }
  return {
    has: (path) => files.has(path),
    serve (req, res, path) {
      if (!files.has(path)) return false
      const a = all().get(path)!
      const headers = {
        'content-type': a.type,
        etag: a.etag,
        'cache-control': 'no-cache',
        'x-content-type-options': 'nosniff',
        ...(path === '/' ? { 'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'", 'x-frame-options': 'DENY' } : {})
      }
      if (req.headers['if-none-match'] === a.etag) { res.writeHead(304, headers); res.end(); return true }
      res.writeHead(200, { ...headers, 'content-length': a.body.length })
      res.end(req.method === 'HEAD' ? undefined : a.body)
      return true
    },
    bytes () {
      let n = 0
      for (const a of all().values()) n += a.body.length
      return n
    }
  }
}
