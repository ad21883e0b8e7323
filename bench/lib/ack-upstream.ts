/**
 * A healthy upstream that costs no disk: an in-process HTTP server speaking upstream
 * protocol v1 (POST /v1/batches) that answers every item `stored` at once, without
 * storing anything. For benchmarks that count the gateway's own disk writes (bench/flash.ts):
 * a real ingest on the same box would add its writes to the device's counters. It undoes the
 * gateway's content-encoding: before it did, every gzip batch got a 400 and the gateway
 * dead-lettered the items, so "healthy" cases measured dead-letter writes.
 */
import http from 'node:http'
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib'
import type { AddressInfo } from 'node:net'
import { AckCode, decodeBatch, encodeResponse, itemKey, type ItemResult } from '../../protocol/index.ts'

export type AckUpstream = { url: string, items: () => number, refused: () => number, close: () => Promise<void> }

/** The request body as the gateway compressed it (`content-encoding`: gzip, br, deflate or none). */
function body (chunks: Buffer[], encoding: string | undefined): Buffer {
  const raw = Buffer.concat(chunks)
  switch (encoding ?? 'identity') {
    case 'identity': return raw
    case 'gzip': return gunzipSync(raw)
    case 'br': return brotliDecompressSync(raw)
    case 'deflate': return inflateSync(raw)
    default: throw new Error(`unknown content-encoding ${encoding}`)
  }
}

export async function startAckUpstream (): Promise<AckUpstream> {
  let items = 0
  let refused = 0 // requests answered 400: the gateway then dead-letters items, and the case is not "healthy"
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      try {
        const batch = decodeBatch(body(chunks, req.headers['content-encoding']), { maxItems: 100_000 })
        const results: ItemResult[] = []
        for (const it of batch.items) {
          const k = itemKey(it)
          if (k) results.push([k[0], k[1], AckCode.Stored])
        }
        items += results.length
        res.writeHead(200, { 'content-type': 'application/cbor' }).end(encodeResponse({ batch: batch.batch, results }))
      } catch (err) {
        refused++
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'bad_request', message: (err as Error).message }))
      }
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    items: () => items,
    refused: () => refused,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}
