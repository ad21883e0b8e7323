/**
 * One device stalled the intake with bignums. `{"values":{"a":tag2(n
 * bytes)}}` cost cbor-x a quadratic BigInt build before the reading was rejected (16 KiB
 * ~25 ms, 64 KiB ~420 ms), and a gzip body inflating to an 8 MiB bignum blocked the ingest
 * for every tenant. The tag is now refused by the scanner: the reading is dead-lettered at
 * once with the tag as its reason, the ingest answers 400 at once.
 */
import assert from 'node:assert/strict'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { test } from 'node:test'
import { gzipSync } from 'node:zlib'
import { AckCode, decodeBatch, decodeResponse, encodeBatch, encodeResponse, type ItemResult } from '../../protocol/index.ts'
import { spawnCli, tempDir, waitFor } from '../helpers/index.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')

/** A CBOR byte-string head for n bytes. */
function bytesHead (n: number): Buffer {
  if (n < 65536) return Buffer.from([0x59, n >> 8, n & 0xff])
  const b = Buffer.alloc(5); b[0] = 0x5a; b.writeUInt32BE(n, 1); return b
}

/** {"values":{"a":tag2(n bytes of 0xff)}}: the tag head is at byte 11. */
const bignumReading = (n: number): Buffer => Buffer.concat([hex('a1 66 76616c756573 a1 61 61 c2'), bytesHead(n), Buffer.alloc(n, 0xff)])

test('40 readings carrying a 60 KiB bignum are dead-lettered at once and PUBACKed; other devices are not held up', { timeout: 60_000 }, async (t) => {
  const gw = await startGateway(t, { maxPayloadBytes: 64 * 1024 - 100 })
  const bad = await connectDevice(t, gw.mqttPort, 'bignum-1')
  const good = await connectDevice(t, gw.mqttPort, 'good-1')
  await publish(good, 'devices/good-1/readings', reading(1)) // warm: connection, partition, first commit
  const payload = bignumReading(60 * 1024)
  const t0 = performance.now()
  const flood = Array.from({ length: 40 }, () => publish(bad, 'devices/bignum-1/readings', payload))
  await publish(good, 'devices/good-1/readings', reading(2))
  await Promise.all(flood)
  const ms = performance.now() - t0
  // before: cbor-x spent ~420 ms on each (17 s for 40, the event loop blocked all along);
  // now it is the 2.4 MB of dead letters written. Generous for a loaded 2-core box.
  assert.ok(ms < 8000, `40 bignum readings took ${Math.round(ms)} ms`)
  const dead = (await gw.store.deadLetters(100)).filter((d) => d.device === 'bignum-1')
  assert.equal(dead.length, 40, 'every one is dead-lettered, none lost')
  for (const d of dead) {
    assert.equal(d.kind, 'payload')
    assert.equal(d.reason, 'CBOR tag 2 at byte 11 is not accepted (untrusted CBOR carries no tags)')
    assert.equal(Buffer.from(d.raw).length, payload.length, 'the raw payload is kept whole')
  }
})

test('the 9-byte tag2(h\'01\') reading of the issue is dead-lettered with the tag as its reason', async (t) => {
  const gw = await startGateway(t)
  const c = await connectDevice(t, gw.mqttPort, 'bignum-2')
  await publish(c, 'devices/bignum-2/readings', hex('a1 66 76616c756573 a1 61 61 c2 41 01'))
  const [d] = await gw.store.deadLetters(10)
  assert.equal(d?.reason, 'CBOR tag 2 at byte 11 is not accepted (untrusted CBOR carries no tags)')
})

function post (port: number, path: string, headers: Record<string, string>, body: Buffer, timeoutMs: number): Promise<{ status: number, body: Buffer }> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port, path, method: 'POST', headers, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    r.on('timeout', () => r.destroy(new Error(`no answer within ${timeoutMs} ms: the ingest is blocked`)))
    r.on('error', reject)
    r.end(body)
  })
}

test('ingest: a gzip body inflating to an 8 MiB bignum gets 400 at once, and the ingest keeps serving', { timeout: 60_000 }, async (t) => {
  // a child process: before the fix this request blocked the ingest's event loop for hours
  const dir = await tempDir(t, 'ingest-tags-')
  const ing = await spawnCli(t, 'ingest/main.ts', ['--port', '0', '--token', 'gw1:sec-1-cbor-tags-0001', '--data-dir', join(dir, 'db')], { env: { LOG_LEVEL: 'error' } })
  const port = ing.ready.port as number
  const auth = { authorization: 'Bearer sec-1-cbor-tags-0001', 'content-type': 'application/cbor' }
  const n = 8 * 1024 * 1024 - 64
  // {"v": tag2(n bytes)}: the tag head is at byte 3
  const raw = Buffer.concat([hex('a1 61 76 c2'), bytesHead(n), Buffer.alloc(n, 0xff)])
  const gz = gzipSync(raw)
  assert.ok(gz.length < 64 * 1024, 'a small body on the wire')
  for (const [path, enc] of [['/v1/batches', 'gzip'], ['/v2/batches', 'gzip']] as const) {
    const t0 = performance.now()
    const r = await post(port, path, { ...auth, 'content-encoding': enc }, gz, 20_000)
    const ms = performance.now() - t0
    assert.equal(r.status, 400, r.body.toString())
    const body = JSON.parse(r.body.toString()) as { error: string, message: string }
    assert.equal(body.error, 'malformed_cbor')
    assert.equal(body.message, 'CBOR tag 2 at byte 3 is not accepted (untrusted CBOR carries no tags)')
    // inflating 8 MiB and scanning it: tens of ms; generous for a loaded box
    assert.ok(ms < 5000, `${path} answered after ${Math.round(ms)} ms`)
  }
  const ok = await post(port, '/v1/batches', auth, encodeBatch({ gateway: 'gw1', epoch: 'e', batch: 'b', floors: [[0, 1]], items: [[0, 1, 'd', 1, 1, 1, 1, { a: 1 }]] }), 20_000)
  assert.equal(ok.status, 200)
  assert.deepEqual(decodeResponse(ok.body).results.map((x) => x[2]), [0])
})

test('gateway: a 200 response carrying a 60 KiB bignum is a bad response, refused at once; the batch is sent again, not lost', { timeout: 60_000 }, async (t) => {
  // an ingest (or something in its place) whose first two answers hold {"v": 1, "batch": tag2(60 KiB), ...}
  let answers = 0
  const stored: string[] = []
  const server = createServer((req, res) => {
    if (req.url !== '/v1/batches') { res.writeHead(404); res.end(); return } // no command API here
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const batch = decodeBatch(Buffer.concat(chunks), { maxItems: 1000 })
      res.writeHead(200, { 'content-type': 'application/cbor' })
      if (++answers <= 2) {
        res.end(Buffer.concat([hex('a3 61 76 01 65 6261746368 c2'), bytesHead(60 * 1024), Buffer.alloc(60 * 1024, 0xff), hex('67 726573756c7473 80')]))
        return
      }
      const results = batch.items.map((i) => { const it = i as unknown[]; stored.push(`${String(it[2])}:${String(it[3])}`); return [it[0], it[1], AckCode.Stored] as ItemResult })
      res.end(encodeResponse({ batch: batch.batch, results }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections() }))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const gw = await startGateway(t, { upstream: [url], token: 'cbor-tags-token-0001', lingerMs: 20, retryBaseMs: 20, retryMaxMs: 200, upstreamProtocol: 'v1', compression: 'none' })
  const c = await connectDevice(t, gw.mqttPort, 'resp-1')
  await publish(c, 'devices/resp-1/readings', reading(1))
  const base = `http://127.0.0.1:${gw.adminPort}`
  const seen: string[] = []
  await waitFor(async () => {
    const st = await (await fetch(base + '/status')).json() as { upstream: { lastError: string | null } }
    if (st.upstream.lastError) seen.push(st.upstream.lastError)
    return stored.length === 1
  }, { timeoutMs: 30_000, what: 'the reading stored after two bad responses' })
  assert.deepEqual(stored, ['resp-1:1'], 'delivered once, after the bad answers')
  const metrics = await (await fetch(base + '/metrics')).text()
  assert.match(metrics, /gateway_upstream_batches_total\{outcome="bad_response"\} 2/)
  assert.ok(seen.some((e) => e.includes('CBOR tag 2 at byte 10 is not accepted')), `the tag is named in /status: ${seen.join(' | ')}`)
})
