/**
 * HTTP around the audit: page through the ingest query API (docs/design.md section 7) and wait,
 * bounded, until the gateway has handed everything it buffered to the ingest.
 */
import { EdgeError } from '../protocol/index.ts'
import { auditDevice, summarize, type AuditResult, type DeviceAudit, type StoredRow } from './audit.ts'
import type { DeviceRecord } from './record.ts'

export type FetchFn = typeof fetch

/**
 * The audit could not read the ingest: `status` is 0 when no answer came (retryable), else
 * the HTTP status (retryable for 429 and 5xx; 200 with a body the audit cannot use is not).
 */
export class AuditHttpError extends EdgeError {
  static override readonly code = 'EDGE_ERR_AUDIT_HTTP'
  override name = 'AuditHttpError'
  readonly status: number
  readonly url: string
  constructor (url: string, status: number, message: string, opts: { cause?: unknown, retryable?: boolean } = {}) {
    super(message, { cause: opts.cause, retryable: opts.retryable ?? (status === 0 || status === 429 || status >= 500) })
    this.status = status
    this.url = url
  }
}

async function getJson (url: string, f: FetchFn, timeoutMs = 15_000): Promise<unknown> {
  let res: Response
  try {
    res = await f(url, { signal: AbortSignal.timeout(timeoutMs) })
  } catch (err) {
    throw new AuditHttpError(url, 0, `GET ${url} failed: ${(err as Error).message}`, { cause: err })
  }
  const body = await res.text()
  if (!res.ok) throw new AuditHttpError(url, res.status, `GET ${url}: HTTP ${res.status} ${body.slice(0, 200)}`)
  try { return JSON.parse(body) } catch (err) { throw new AuditHttpError(url, res.status, `GET ${url}: not JSON`, { cause: err }) }
}

type Page = { readings?: unknown, next?: unknown }

/** Every stored reading of one device and boot, following `next` cursors. */
export async function fetchReadings (ingestUrl: string, deviceId: string, boot: number | string, opts: { fetch?: FetchFn, limit?: number, maxPages?: number } = {}): Promise<StoredRow[]> {
  const f = opts.fetch ?? fetch
  const base = `${ingestUrl.replace(/\/+$/, '')}/v1/devices/${encodeURIComponent(deviceId)}/readings?boot=${encodeURIComponent(String(boot))}&limit=${opts.limit ?? 1000}`
  const rows: StoredRow[] = []
  const seen = new Set<string>()
  let cursor: string | null = null
  for (let page = 0; ; page++) {
    if (page >= (opts.maxPages ?? 1_000_000)) throw new AuditHttpError(base, 0, `more than ${opts.maxPages} pages for ${deviceId}`, { retryable: false })
    const url: string = cursor === null ? base : `${base}&cursor=${encodeURIComponent(cursor)}`
    const body = await getJson(url, f) as Page
    if (!Array.isArray(body.readings)) throw new AuditHttpError(url, 200, `GET ${url}: no readings array`)
    for (const r of body.readings as Record<string, unknown>[]) {
      rows.push({
        seq: typeof r.seq === 'number' ? r.seq : null,
        boot: (typeof r.boot === 'number' || typeof r.boot === 'string') ? r.boot : null,
        ...(typeof r.gateway === 'string' ? { gateway: r.gateway } : {}),
        ...(typeof r.epoch === 'string' ? { epoch: r.epoch } : {}),
        ...(typeof r.p === 'number' ? { p: r.p } : {}),
        ...(typeof r.s === 'number' ? { s: r.s } : {})
      })
    }
    const next = body.next
    if (next === null || next === undefined || next === '') return rows
    cursor = String(next)
    // a server that hands back a cursor it already gave would loop forever
    if (seen.has(cursor)) throw new AuditHttpError(url, 200, `cursor ${cursor} repeated for ${deviceId}`)
    seen.add(cursor)
  }
}

export type DrainProgress = { waitedMs: number, gatewayBuffered?: number, ingestTotal?: number, note: string }

/**
 * Waits until the gateway's buffer is empty (`/status` buffered.items == 0) when an admin
 * URL is known, then until the ingest's `/v1/stats` total stops changing for `stableMs`.
 * Returns whether it settled before `timeoutMs` (the audit runs either way).
 */
export async function waitForDrain (opts: { ingestUrl: string, gatewayAdmin?: string | undefined, timeoutMs: number, stableMs?: number, pollMs?: number, fetch?: FetchFn, onProgress?: (p: DrainProgress) => void }): Promise<{ settled: boolean, waitedMs: number }> {
  const f = opts.fetch ?? fetch
  const start = Date.now()
  const stableMs = opts.stableMs ?? (opts.gatewayAdmin ? 500 : 3000)
  const pollMs = opts.pollMs ?? 250
  let lastTotal = -1
  let stableSince = Date.now()
  for (;;) {
    const waitedMs = Date.now() - start
    let buffered: number | undefined
    let total: number | undefined
    let note = ''
    try {
      if (opts.gatewayAdmin) {
        const st = await getJson(`${opts.gatewayAdmin.replace(/\/+$/, '')}/status`, f, 5000) as { buffered?: { items?: number } }
        buffered = st.buffered?.items
      }
      const stats = await getJson(`${opts.ingestUrl.replace(/\/+$/, '')}/v1/stats`, f, 5000) as { stored?: number, duplicates?: number, rejected?: number }
      total = (stats.stored ?? 0) + (stats.duplicates ?? 0) + (stats.rejected ?? 0)
    } catch (err) { note = (err as Error).message }
    if (total !== undefined && total !== lastTotal) { lastTotal = total; stableSince = Date.now() }
    const gatewayEmpty = !opts.gatewayAdmin || buffered === 0
    const stable = total !== undefined && Date.now() - stableSince >= stableMs
    opts.onProgress?.({ waitedMs, ...(buffered !== undefined ? { gatewayBuffered: buffered } : {}), ...(total !== undefined ? { ingestTotal: total } : {}), note })
    if (gatewayEmpty && stable) return { settled: true, waitedMs }
    if (waitedMs >= opts.timeoutMs) return { settled: false, waitedMs }
    await new Promise((r) => setTimeout(r, pollMs))
  }
}

export type AuditProgress = { done: number, total: number }

/** Fetches every device's boots from the ingest and audits them (see audit.ts). */
export async function runAudit (records: readonly DeviceRecord[], opts: { ingestUrl: string, concurrency?: number, fetch?: FetchFn, limit?: number, onProgress?: (p: AuditProgress) => void }): Promise<AuditResult> {
  const audits: DeviceAudit[] = new Array(records.length)
  let next = 0
  let done = 0
  const worker = async (): Promise<void> => {
    while (next < records.length) {
      const i = next++
      const rec = records[i]!
      const rows: StoredRow[] = []
      for (const b of rec.boots) {
        if (b.generated === 0) continue
        const page = await fetchReadings(opts.ingestUrl, rec.id, b.boot, { ...(opts.fetch ? { fetch: opts.fetch } : {}), ...(opts.limit ? { limit: opts.limit } : {}) })
        for (const r of page) rows.push(r)
      }
      audits[i] = auditDevice(rec, rows)
      done++
      opts.onProgress?.({ done, total: records.length })
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 8, Math.max(1, records.length)) }, worker))
  return summarize(audits)
}
