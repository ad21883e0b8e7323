/**
 * The ingest's protocol v2 route and negotiation (docs/protocol-v2.md): the same items
 * through v1 and v2 dedup against each other, every answer advertises the versions and
 * encodings, a v1-only ingest has no v2 route and no headers, br/deflate bodies are taken,
 * and a malformed columnar body is a 400 naming the field.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { brotliCompressSync, deflateRawSync, deflateSync } from 'node:zlib'
import {
  AckCode, decodeResponse, decodeResponseV2, encodeBatch, encodeBatchV2, encodeCbor, type BatchItem
} from '../../protocol/index.ts'
import { createIngest, type Ingest, type IngestOptions } from '../../ingest/index.ts'
import { tempDir } from '../helpers/index.ts'

const SECRET = 'sec-v2-pad-01234'
const env = { gateway: 'gw1', epoch: 'ep1', batch: 'b1', floors: [[0, 1]] as [number, number][] }
const items: BatchItem[] = Array.from({ length: 20 }, (_, i) => [0, i + 1, `d${i % 3}`, 100 + i, 1, 1_790_000_000_000 + i, 1_790_000_000_005 + i, { t: 20 + i / 4, ok: i % 2 === 0 }])

async function start (t: TestContext, opts: IngestOptions = {}): Promise<Ingest> {
  const ing = await createIngest({ port: 0, host: '127.0.0.1', token: [`gw1:${SECRET}`], dataDir: join(await tempDir(t, 'ingest-v2-'), 'db'), ...opts })
  t.after(() => ing.close())
  return ing
}

function post (ing: Ingest, path: string, body: Buffer, encoding?: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${ing.port}${path}`, {
    method: 'POST',
    body,
    headers: { authorization: `Bearer ${SECRET}`, 'content-type': 'application/cbor', ...(encoding ? { 'content-encoding': encoding } : {}) }
  })
}

test('v2 and v1 carry the same identity: a batch stored as v2 is answered duplicate as v1, and the reverse', async (t) => {
  const ing = await start(t)
  const r2 = await post(ing, '/v2/batches', encodeBatchV2(env, items.slice(0, 10)))
  assert.equal(r2.status, 200)
  assert.equal(r2.headers.get('ingest-protocols'), '1, 2')
  assert.match(r2.headers.get('ingest-encodings') ?? '', /\bbr\b/)
  const a2 = decodeResponseV2(Buffer.from(await r2.arrayBuffer()))
  assert.deepEqual(a2.results.map((r) => r[2]), new Array(10).fill(AckCode.Stored))
  const r1 = await post(ing, '/v1/batches', encodeBatch({ ...env, items }))
  const a1 = decodeResponse(Buffer.from(await r1.arrayBuffer()))
  assert.deepEqual(a1.results.map((r) => r[2]), [...new Array(10).fill(AckCode.Duplicate), ...new Array(10).fill(AckCode.Stored)])
  const again = decodeResponseV2(Buffer.from(await (await post(ing, '/v2/batches', encodeBatchV2(env, items))).arrayBuffer()))
  assert.deepEqual(again.results.map((r) => r[2]), new Array(20).fill(AckCode.Duplicate))
  // the readings read back exactly as sent
  const q = await (await fetch(`http://127.0.0.1:${ing.port}/v1/devices/d0/readings`)).json() as { readings: { seq: number, ts: number, values: Record<string, unknown> }[] }
  assert.deepEqual(q.readings.map((r) => [r.seq, r.ts, r.values]), items.filter((i) => i[2] === 'd0').map((i) => [i[3], i[5], i[7]]))
  const caps = await (await fetch(`http://127.0.0.1:${ing.port}/v1/capabilities`)).json() as { protocols: number[] }
  assert.deepEqual(caps.protocols, [1, 2])
})

test('compressed v2 bodies: br, deflate (zlib and raw); an unknown encoding is 415', async (t) => {
  const ing = await start(t)
  const body = encodeBatchV2(env, items)
  for (const [enc, b, batchItems] of [['br', brotliCompressSync(body), 0], ['deflate', deflateSync(body), 1], ['deflate', deflateRawSync(body), 1]] as const) {
    const r = await post(ing, '/v2/batches', b, enc)
    assert.equal(r.status, 200, `${enc}: ${await r.clone().text()}`)
    const codes = decodeResponseV2(Buffer.from(await r.arrayBuffer())).results.map((x) => x[2])
    assert.deepEqual(codes, new Array(20).fill(batchItems === 0 ? AckCode.Stored : AckCode.Duplicate), enc)
  }
  assert.equal((await post(ing, '/v2/batches', body, 'zstd')).status, 415)
})

test('a malformed v2 body is a 400 naming the field; a bad item inside is rejected alone', async (t) => {
  const ing = await start(t)
  const bad = { v: 2, gateway: 'gw1', epoch: 'ep1', batch: 'x', floors: [], n: 2, p: [0, 2], s: [1, 2], dev: ['a'], di: [0, 3], boot: [null], bootAt: [], seq: [null, null], ts: [null, null], rx: [1, 1], names: ['t'], shapes: [[0]], devShape: [0], shapeAt: [], cols: [[1, 0, 1, 1]] }
  const r = await post(ing, '/v2/batches', encodeCbor(bad))
  assert.equal(r.status, 400)
  assert.equal((await r.json() as { field: string }).field, 'di[1]')
  // structurally fine, but one item has an invalid device id: answered rejected on its own
  const mixed: BatchItem[] = [[0, 1, 'good', 1, null, null, 5, { t: 1 }], [0, 2, 'bad id!', 2, null, null, 6, { t: 2 }]]
  const res = decodeResponseV2(Buffer.from(await (await post(ing, '/v2/batches', encodeBatchV2(env, mixed))).arrayBuffer()))
  assert.deepEqual(res.results.map((x) => x.slice(0, 3)), [[0, 1, AckCode.Stored], [0, 2, AckCode.Rejected]])
  assert.match(res.results[1]![3] ?? '', /device/)
})

test('--protocols 1 answers as an ingest from before v2: no /v2 route, no negotiation headers', async (t) => {
  const ing = await start(t, { protocols: ['1'] })
  const r = await post(ing, '/v2/batches', encodeBatchV2(env, items))
  assert.equal(r.status, 405, 'a POST to a path it does not route: what an ingest from before v2 answers too (the gateway takes 404 and 405 as "no v2 here")')
  assert.equal(r.headers.get('ingest-protocols'), null)
  const ok = await post(ing, '/v1/batches', encodeBatch({ ...env, items }))
  assert.equal(ok.status, 200)
  assert.equal(ok.headers.get('ingest-protocols'), null)
  await assert.rejects(createIngest({ port: 0, host: '127.0.0.1', token: ['gw1:x-pad-0123456789'], dataDir: join(await tempDir(t), 'db'), protocols: ['2'] }), /must include 1/)
})
