/**
 * A gateway whose upstream takes readings but has no command API (a readings-only ingest:
 * 404 on the command routes): it says so once and asks again only after
 * --command-api-retry-ms, instead of sending its reports again every back-off step; readings
 * flow as before.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { AckCode, decodeBatch, encodeResponse, type ItemResult } from '../../protocol/index.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { waitFor } from '../helpers/index.ts'

test('an upstream without a command API: command reports are tried once, not every back-off step; readings flow', async (t) => {
  const hits = new Map<string, number>()
  let answered = 0
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0]!
    hits.set(path, (hits.get(path) ?? 0) + 1)
    if (path !== '/v1/batches') { res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found","message":"no such route"}'); return }
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const b = decodeBatch(Buffer.concat(chunks), { maxItems: 10_000 })
      res.writeHead(200, { 'content-type': 'application/cbor' }).end(encodeResponse({ batch: b.batch, results: b.items.map((i) => { const it = i as unknown[]; return [it[0], it[1], AckCode.Stored] as ItemResult }) }))
      answered++
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections() }))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const gw = await startGateway(t, { upstream: [url], token: 'no-command-api-token-01', lingerMs: 20, upstreamProtocol: 'v1', compression: 'none' })
  const c = await connectDevice(t, gw.mqttPort, 'plain-1')
  await waitFor(() => (hits.get('/v1/gateway/command-reports') ?? 0) >= 1, { what: 'the first reports request (the presence snapshot)' })
  // readings answered over more than 2 s: the reporter's back-off (0.5 s, 1 s, ...) would have sent its reports again meanwhile
  const t0 = performance.now()
  for (let seq = 1; performance.now() - t0 < 2200 || answered < 5; seq++) {
    await publish(c, 'devices/plain-1/readings', reading(seq))
    const want = answered + 1
    await waitFor(() => answered >= want, { what: `batch with reading ${seq} answered` })
  }
  assert.equal(hits.get('/v1/gateway/command-reports'), 1, 'reports tried once while the command API is absent')
  assert.ok((hits.get('/v1/gateway/commands') ?? 0) <= 1, `polls: ${hits.get('/v1/gateway/commands')}`)
  assert.ok(((await gw.status()) as { commands?: unknown }).commands, '/status still lists the commands part')
})
