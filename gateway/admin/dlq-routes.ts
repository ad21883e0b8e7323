/**
 * Admin API of the dead-letter tools (the same operations as `gateway dlq ...`):
 *
 *   GET  /dlq?device=&reason=&kind=&since=&until=&id=&limit=&after=&order=   list (JSON, paged by id;
 *                                                       order=oldest (default) or newest)
 *   GET  /dlq/summary                                                   counts by kind and reason
 *   GET  /dlq/{id}                                                      one record, raw bytes in base64
 *   GET  /dlq/export?filters                                            JSON lines (application/x-ndjson)
 *   POST /dlq/replay  {filters..., dryRun}                              re-validate and re-queue
 *   POST /dlq/purge   {filters..., dryRun, all}                         delete
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { HttpError, ValidationError } from '../../protocol/index.ts'
import { parseFilter, type DeadLetterTools } from '../dlq/index.ts'
import { csrfProblem } from './auth.ts'

const MAX_BODY = 64 * 1024

async function readJson (req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let n = 0
  for await (const c of req) {
    n += (c as Buffer).length
    if (n > MAX_BODY) throw new HttpError(413, 'too_large', `body over ${MAX_BODY} bytes`)
    chunks.push(c as Buffer)
  }
  if (n === 0) return {}
  let v: unknown
  try { v = JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch { throw new HttpError(400, 'bad_json', 'body is not JSON') }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new HttpError(400, 'bad_json', 'body must be a JSON object')
  return v as Record<string, unknown>
}

function pick (src: Record<string, unknown>, omit: string[]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(src).filter(([k]) => !omit.includes(k)))
}

function intParam (v: string | null, field: string): number | undefined {
  if (v === null || v === '') return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0) throw new ValidationError(field, 'must be an unsigned integer')
  return n
}

const json = (res: ServerResponse, status: number, body: unknown): void => {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' })
  res.end(JSON.stringify(body))
}

/** Handles /dlq routes; false when `path` is not one. */
export async function dlqRoute (req: IncomingMessage, res: ServerResponse, url: URL, dlq: DeadLetterTools): Promise<boolean> {
  const path = url.pathname
  if (path !== '/dlq' && !path.startsWith('/dlq/')) return false
  const q = Object.fromEntries(url.searchParams)
  if (req.method === 'POST') {
    if (path !== '/dlq/replay' && path !== '/dlq/purge') throw new HttpError(405, 'method_not_allowed', `POST ${path} is not a route`)
    const problem = csrfProblem(req)
    if (problem) throw new HttpError(403, 'forbidden', problem)
    const body = await readJson(req)
    const filter = parseFilter(pick(body, ['dryRun', 'all']))
    const dryRun = body.dryRun === true
    if (path === '/dlq/replay') json(res, 200, await dlq.replay(filter, { dryRun }))
    else json(res, 200, await dlq.purge(filter, { dryRun, all: body.all === true }))
    return true
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'method_not_allowed', 'use GET or POST')
  if (path === '/dlq') {
    const filter = parseFilter(pick(q, ['limit', 'after', 'order']))
    const order = url.searchParams.get('order') ?? 'oldest'
    if (order !== 'oldest' && order !== 'newest') throw new ValidationError('order', 'must be oldest or newest')
    json(res, 200, await dlq.list(filter, { limit: intParam(url.searchParams.get('limit'), 'limit'), afterId: intParam(url.searchParams.get('after'), 'after'), newest: order === 'newest' }))
    return true
  }
  if (path === '/dlq/summary') { json(res, 200, { total: dlq.count, ...await dlq.summary() }); return true }
  if (path === '/dlq/export') {
    const filter = parseFilter(q)
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store', 'content-disposition': 'attachment; filename="dead-letters.jsonl"' })
    for await (const line of dlq.export(filter)) {
      if (!res.write(line)) await new Promise((resolve) => res.once('drain', resolve))
      if (res.destroyed) break
    }
    res.end()
    return true
  }
  const id = /^\/dlq\/(\d{1,16})$/.exec(path)?.[1]
  if (id === undefined) throw new HttpError(404, 'not_found', `no route ${path}`)
  const rec = await dlq.show(Number(id))
  if (!rec) throw new HttpError(404, 'not_found', `no dead-letter record ${id}`)
  json(res, 200, rec)
  return true
}
