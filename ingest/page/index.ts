/**
 * The ingest's page at `/`: per gateway stored / duplicate / rejected / evicted / conflict
 * rates, batch latency, the latest reading of each device and the first natural-key
 * conflicts. `GET /ui/live` is its data (the sink's counts, the batch latency histogram's
 * cumulative buckets, the latest readings, the first conflicts of the token's fleet);
 * the page polls it once a second and computes rates and quantiles from the differences.
 * `/ui/live` is read side like `/v1/stats` (read-auth.ts: it shows readings): with read
 * tokens configured it needs `authorization: Bearer READ_TOKEN` (401 without), and a
 * fleet-bound token sees only its fleet's gateways and devices; the batch latency histogram
 * counts every fleet's batches, so, like /metrics, only fleet * gets it. The page asks for
 * the token on a 401 and keeps it in the tab's sessionStorage (never in a URL, so never in
 * an access log or the history). The static files hold no data and need nothing.
 * With commands to devices on, `/ui/live` also has `commands`: the most recently changed
 * commands of the token's fleet (`Commands.recent`, newest first) and, for fleet * only (the
 * store counts every fleet's), the counts by state; null when the ingest has no command store.
 * Files: index.html, app.js, style.css here, chart.js and base.css from web/ (shared with
 * the gateway's page), served by common/page.ts from memory.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { staticPage } from '../../common/index.ts'
import type { Commands } from '../commands/index.ts'
import type { IngestMetrics } from '../metrics.ts'
import { ALL_FLEETS, type ReadAuth, type ReadScope } from '../read-auth.ts'
import type { Sink } from '../sinks/types.ts'
import { RecentReadings } from './recent.ts'

export { RecentReadings } from './recent.ts'

/** Conflicts listed on the page (the rest through GET /v1/conflicts). */
const CONFLICTS_SHOWN = 20
/** Commands listed on the page (the rest through GET /v1/commands). */
const COMMANDS_SHOWN = 50

/** One command as the page lists it. */
export type PageCommand = { id: string, device: string, name: string, state: string, gateway: string | null, history: number, createdAt: number, updatedAt: number, expiresAt: number }

export type PageCommands = { counts: Record<string, number> | null, windowMs: number, recent: PageCommand[] }

/**
 * The page's commands for a read scope: the latest changed ones of its fleet (`*`: all),
 * and the counts by state for fleet * only (the store's counts are over every fleet).
 */
export async function pageCommands (commands: Commands, fleet: string, limit = COMMANDS_SHOWN): Promise<PageCommands> {
  const all = fleet === ALL_FLEETS
  const [counts, recent] = await Promise.all([all ? commands.store.counts() : null, commands.recent(all ? '*' : fleet, limit)])
  return {
    counts,
    windowMs: recent.windowMs,
    recent: recent.commands.map((r) => ({ id: r.id, device: r.device, name: r.name, state: r.state, gateway: r.gateway, history: r.history.length, createdAt: r.createdAt, updatedAt: r.updatedAt, expiresAt: r.expiresAt }))
  }
}

const page = staticPage(new URL('./', import.meta.url), ['app.js', 'style.css'])

export function isPagePath (path: string): boolean {
  return path === '/' || path === '/ui/live' || path.startsWith('/assets/')
}

async function batchBuckets (metrics: IngestMetrics): Promise<[number, number][]> {
  const out: [number, number][] = []
  for (const v of (await metrics.requestSeconds.get()).values) {
    const labels = v.labels as Record<string, string | number | undefined>
    if (!v.metricName?.endsWith('_bucket') || labels.route !== 'batches') continue
    out.push([labels.le === '+Inf' ? Infinity : Number(labels.le), v.value])
  }
  return out
}

export type PageDeps = {
  sink: Sink
  metrics: IngestMetrics
  recent: RecentReadings
  readAuth: ReadAuth
  /** commands to devices: absent when this ingest has no command store */
  commands?: Commands
  /** The request's read scope; throws the 401/429 HttpError (server.ts counts failures for the back-off). */
  scope: (req: IncomingMessage) => ReadScope
}

/** Serves the page, its assets and /ui/live. */
export async function servePage (req: IncomingMessage, res: ServerResponse, url: URL, deps: PageDeps): Promise<void> {
  if (url.pathname === '/ui/live') {
    const scope = deps.scope(req) // 401 (HttpError) without a valid read token
    const all = scope.fleet === ALL_FLEETS
    const stats = deps.readAuth.scopeStats(await deps.sink.stats(), scope)
    // the first conflicts of the record (GET /v1/conflicts has them all), looked up only when there are any
    const conflicts = stats.conflicts > 0 ? (await deps.sink.queryConflicts({ limit: CONFLICTS_SHOWN, ...(all ? {} : { fleet: scope.fleet }) })).conflicts : []
    const body = JSON.stringify({
      t: Date.now(),
      fleet: scope.fleet,
      stats,
      conflicts,
      // JSON has no Infinity: the +Inf bucket is sent as null
      batchSeconds: all ? (await batchBuckets(deps.metrics)).map(([le, c]) => [Number.isFinite(le) ? le : null, c]) : [],
      commands: deps.commands ? await pageCommands(deps.commands, scope.fleet) : null,
      ...deps.recent.latest(Number(url.searchParams.get('limit') ?? 50) || 50, url.searchParams.get('q') ?? '', all ? undefined : scope.fleet)
    })
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(body) })
    res.end(body)
    return
  }
  if (page.serve(req, res, url.pathname)) return
  res.writeHead(404, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ error: 'not_found', message: `no route ${url.pathname.slice(0, 100)}` }))
}
