/**
 * A scriptable upstream ingest for gateway tests: decodes every batch with the protocol
 * codec, records it, and answers through `handler` (default: every item stored).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { gunzipSync } from 'node:zlib'
import { AckCode, decodeBatch, encodeResponse, validateItem, type BatchItem, type ItemResult, type BatchRequest } from '../../protocol/index.ts'

export type Reply =
  | { status: 200, results?: ItemResult[] }
  | { status: number, body?: string, headers?: Record<string, string> }
  | { drop: true }

export type Handler = (req: BatchRequest, n: number) => Reply | Promise<Reply>

export type FakeUpstream = {
  url: string
  batches: Array<BatchRequest>
  /** every item answered stored or duplicate, keyed `${p}:${s}` */
  stored: Map<string, BatchItem>
  requests: number
  handler: Handler
  close: () => Promise<void>
}

export const allStored: Handler = (req) => ({ status: 200, results: req.items.map((i) => [i[0], i[1], AckCode.Stored] as ItemResult) })

export async function startFakeUpstream (t: { after: (fn: () => unknown) => void }, handler: Handler = allStored): Promise<FakeUpstream> {
  const f: FakeUpstream = { url: '', batches: [], stored: new Map(), requests: 0, handler, close: async () => {} }
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    // a readings-only upstream: the gateway's command link (long poll, reports) finds no command API here
    if (!/^\/v[12]\/batches$/.test(req.url ?? '')) { res.writeHead(404, { 'content-type': 'application/json' }); res.end('{"error":"not_found","message":"no such route"}'); return }
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      void (async () => {
        f.requests++
        let body = Buffer.concat(chunks)
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body)
        const raw = decodeBatch(body, { maxItems: 100000 })
        const items = raw.items.map(validateItem)
        const batch = { ...raw, items }
        f.batches.push(batch)
        const reply = await f.handler(batch, f.requests)
        if ('drop' in reply) { req.socket.destroy(); return }
        if (reply.status === 200) {
          const results = (reply as { results?: ItemResult[] }).results ?? allStored(batch, 0) as unknown as ItemResult[]
          for (const r of results) {
            if (r[2] === AckCode.Stored || r[2] === AckCode.Duplicate) {
              const it = items.find((i) => i[0] === r[0] && i[1] === r[1])
              if (it) f.stored.set(`${r[0]}:${r[1]}`, it)
            }
          }
          res.writeHead(200, { 'content-type': 'application/cbor' })
          res.end(encodeResponse({ batch: raw.batch, results }))
          return
        }
        const r = reply as { status: number, body?: string, headers?: Record<string, string> }
        res.writeHead(r.status, { 'content-type': 'application/json', ...r.headers })
        res.end(r.body ?? JSON.stringify({ error: `status_${r.status}`, message: 'fake upstream' }))
      })().catch((err: Error) => {
        res.writeHead(400, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: 'bad_request', message: err.message }))
      })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  f.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  f.close = () => new Promise((r) => { server.close(() => r()); server.closeAllConnections() })
  t.after(() => f.close())
  return f
}
