import assert from 'node:assert/strict'
import { request } from 'node:http'
import { connect } from 'node:net'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { gzipSync } from 'node:zlib'
import fc from 'fast-check'
import { AckCode, decodeResponse, encodeBatch, encodeCbor, type BatchItem, type BatchRequest } from '../../protocol/index.ts'
import { createIngest, type Ingest, type IngestOptions } from '../../ingest/index.ts'
import { spawnCli, tempDir, waitFor } from '../helpers/index.ts'

const SECRET = 'sec-gw1-pad-0123'
const AUTH = { authorization: `Bearer ${SECRET}`, 'content-type': 'application/cbor' }

type Reply = { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer } | { error: NodeJS.ErrnoException }

/** One request on a fresh connection; resolves with the answer or the socket error. */
function send (port: number, path: string, opts: { method?: string, headers?: Record<string, string | number>, body?: Buffer | Buffer[] } = {}): Promise<Reply> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    const r = request({ host: '127.0.0.1', port, path, method: opts.method ?? (opts.body ? 'POST' : 'GET'), headers: opts.headers, agent: false }, (res) => {
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', (error) => resolve({ error }))
    })
    r.on('error', (error) => resolve({ error }))
    const parts = opts.body === undefined ? [] : Array.isArray(opts.body) ? opts.body : [opts.body]
    for (const p of parts) r.write(p)
    r.end()
  })
}

function ok (r: Reply): { status: number, headers: Record<string, string | string[] | undefined>, body: Buffer } {
  if ('error' in r) throw new Error(`request failed: ${r.error.code ?? r.error.message}`)
  return r
}

function json (r: Reply): Record<string, unknown> {
  return JSON.parse(ok(r).body.toString('utf8')) as Record<string, unknown>
}

const RX = 1_790_000_000_000

function item (p: number, s: number, device = 'dev1'): BatchItem {
  // A distinct device seq per (p, s): the same seq twice would be one reading (natural key).
  return [p, s, device, p * 1_000_000 + s, 1, RX - 3, RX + s, { t: 21.5, n: s }]
}

function batch (items: BatchItem[], extra: Partial<Omit<BatchRequest, 'v'>> = {}): Buffer {
  const floors = [...new Set(items.map((i) => i[0]))].map((p) => [p, Math.min(...items.filter((i) => i[0] === p).map((i) => i[1]))] as [number, number])
  return encodeBatch({ gateway: 'gw1', epoch: 'ep1', batch: `b-${items.length}-${items[0]?.[1] ?? 0}`, floors, items, ...extra })
}

async function postBatch (port: number, body: Buffer, headers: Record<string, string | number> = AUTH): Promise<Reply> {
  return send(port, '/v1/batches', { headers, body })
}

async function codes (port: number, body: Buffer): Promise<number[]> {
  const r = ok(await postBatch(port, body))
  assert.equal(r.status, 200, r.body.toString())
  assert.equal(r.headers['content-type'], 'application/cbor')
  return decodeResponse(r.body).results.map((x) => x[2])
}

async function start (t: TestContext, opts: IngestOptions = {}): Promise<Ingest> {
  const dataDir = opts.dataDir ?? join(await tempDir(t, 'ingest-http-'), 'db')
  const ing = await createIngest({ port: 0, host: '127.0.0.1', token: [`gw1:${SECRET}`, 'gw2:sec-gw2-pad-0123'], dataDir, ...opts })
  t.after(() => ing.close())
  return ing
}

/** The server still stores and answers after whatever came before. */
async function stillServes (port: number, s: number): Promise<void> {
  assert.deepEqual(await codes(port, batch([item(7, s)])), [AckCode.Stored])
}

test('http: a batch is stored, the same batch again is duplicate; results in item order', async (t) => {
  const { port } = await start(t)
  const items = [item(0, 3), item(1, 1), item(0, 4)]
  const body = batch(items)
  const r = ok(await postBatch(port, body))
  assert.equal(r.status, 200)
  const res = decodeResponse(r.body)
  assert.equal(res.batch, 'b-3-3')
  assert.deepEqual(res.results, [[0, 3, 0], [1, 1, 0], [0, 4, 0]])
  assert.deepEqual(await codes(port, body), [1, 1, 1])
  const stats = json(await send(port, '/v1/stats'))
  assert.deepEqual(stats, {
    stored: 3,
    duplicates: 3,
    rejected: 0,
    evicted: 0,
    conflicts: 0,
    gateways: { gw1: { stored: 3, duplicates: 3, rejected: 0, evicted: 0, conflicts: 0 } },
    // commands to devices by state (the LevelDB sink has the command store)
    commands: { queued: 0, 'at-gateway': 0, delivered: 0, completed: 0, rejected: 0, expired: 0, cancelled: 0 }
  })
})

test('http: unreadable bodies get 400 JSON naming the problem, and the server keeps serving', async (t) => {
  const { port } = await start(t)
  const cases: [string, Buffer, string, string?][] = [
    ['truncated CBOR', batch([item(0, 1)]).subarray(0, 20), 'malformed_cbor', 'body'],
    ['not a map', encodeCbor([1, 2, 3]), 'malformed_cbor', 'body'],
    ['empty body', Buffer.alloc(0), 'malformed_cbor', 'body'],
    ['unknown v', encodeCbor({ v: 2, gateway: 'gw1', epoch: 'e', batch: 'b', items: [], floors: [] }), 'invalid_batch', 'v'],
    ['missing epoch', encodeCbor({ v: 1, gateway: 'gw1', batch: 'b', items: [], floors: [] }), 'invalid_batch', 'epoch'],
    ['bad floors', encodeCbor({ v: 1, gateway: 'gw1', epoch: 'e', batch: 'b', items: [], floors: [[1, -1]] }), 'invalid_batch', 'floors[0]'],
    ['item without p/s', encodeCbor({ v: 1, gateway: 'gw1', epoch: 'e', batch: 'b', items: [[0, 1, 'd', 1, 1, 1, 1, { t: 1 }], ['x']], floors: [] }), 'invalid_item', 'items[1]']
  ]
  let s = 1
  for (const [name, body, code, field] of cases) {
    const r = ok(await postBatch(port, body))
    assert.equal(r.status, 400, name)
    assert.equal(r.headers['content-type'], 'application/json', name)
    const j = JSON.parse(r.body.toString()) as Record<string, unknown>
    assert.equal(j.error, code, name)
    assert.equal(typeof j.message, 'string', name)
    if (field) assert.equal(j.field, field, `${name}: ${String(j.message)}`)
    await stillServes(port, s++)
  }
  // The item beside the one without p/s was not stored either: the batch was refused whole.
  assert.equal((json(await send(port, '/v1/devices/d/readings')).readings as unknown[]).length, 0)
})

test('http: random and mutated bodies never crash the server', async (t) => {
  const { port } = await start(t, { maxItems: 50 })
  const valid = batch([item(0, 1), item(0, 2)])
  const statuses = new Set<number>()
  await fc.assert(fc.asyncProperty(fc.oneof(
    fc.uint8Array({ maxLength: 300 }),
    fc.tuple(fc.integer({ min: 0, max: valid.length - 1 }), fc.integer({ min: 0, max: 255 })).map(([i, b]) => { const c = Buffer.from(valid); c[i] = b; return c })
  ), async (bytes) => {
    const r = ok(await postBatch(port, Buffer.from(bytes)))
    statuses.add(r.status)
    assert.ok([200, 400, 403, 413].includes(r.status), `status ${r.status}: ${r.body.toString()}`)
  }), { numRuns: 300, seed: 1234 })
  assert.ok(statuses.has(400))
  await stillServes(port, 100)
})

test('http: invalid items get code 3 with the reason while the rest are stored', async (t) => {
  const { port } = await start(t)
  const bad1 = [0, 2, 'bad device!', 2, 1, RX, RX, { t: 1 }] as unknown as BatchItem
  const bad2 = [0, 3, 'dev1', 3, 1, RX, RX, { 'bad name': 1 }] as unknown as BatchItem
  const bad3 = [0, 4, 'dev1', 4, 1, RX, RX, {}] as unknown as BatchItem
  const r = decodeResponse(ok(await postBatch(port, batch([item(0, 1), bad1, bad2, item(0, 5), bad3]))).body).results
  assert.deepEqual(r.map((x) => x.slice(0, 3)), [[0, 1, 0], [0, 2, 3], [0, 3, 3], [0, 5, 0], [0, 4, 3]])
  assert.match(String(r[1]![3]), /^device: /)
  assert.match(String(r[2]![3]), /^values\.bad name: /)
  assert.match(String(r[4]![3]), /^values: /)
  const stats = json(await send(port, '/v1/stats'))
  assert.equal(stats.stored, 2)
  assert.equal(stats.rejected, 3)
})

test('http: auth: missing or unknown token 401, another gateway\'s batch 403, wrong content-type 415', async (t) => {
  const { port } = await start(t)
  const body = batch([item(0, 1)])
  const missing = ok(await postBatch(port, body, { 'content-type': 'application/cbor' }))
  assert.equal(missing.status, 401)
  assert.equal(json(missing).error, 'unauthorized')
  assert.equal(ok(await postBatch(port, body, { ...AUTH, authorization: 'Bearer nope' })).status, 401)
  assert.equal(ok(await postBatch(port, body, { ...AUTH, authorization: SECRET })).status, 401, 'no Bearer scheme')
  const other = ok(await postBatch(port, body, { ...AUTH, authorization: 'Bearer sec-gw2-pad-0123' }))
  assert.equal(other.status, 403)
  assert.deepEqual(JSON.parse(other.body.toString()).field, 'gateway')
  assert.equal(ok(await postBatch(port, body, { ...AUTH, 'content-type': 'application/json' })).status, 415)
  assert.equal(ok(await postBatch(port, body, { ...AUTH, 'content-encoding': 'zstd' })).status, 415)
  assert.equal(ok(await send(port, '/v1/batches')).status, 405)
  assert.equal(ok(await send(port, '/nope')).status, 404)
  assert.equal((json(await send(port, '/v1/stats'))).stored, 0, 'nothing stored by refused requests')
  await stillServes(port, 1)
})

test('http: body limits: 413 for a declared or streamed oversize body and for too many items', async (t) => {
  const { port } = await start(t, { maxBodyBytes: 4096, maxItems: 20 })
  const big = batch(Array.from({ length: 200 }, (_, i) => item(0, i)))
  assert.ok(big.length > 4096)
  const declared = ok(await postBatch(port, big))
  assert.equal(declared.status, 413)
  assert.equal(json(declared).error, 'body_too_large')
  // Chunked, no content-length: counted while streaming.
  const streamed = await send(port, '/v1/batches', { headers: { ...AUTH, 'transfer-encoding': 'chunked' }, body: [big.subarray(0, 2000), big.subarray(2000, 4000), big.subarray(4000)] })
  assert.equal(ok(streamed).status, 413)
  const many = ok(await postBatch(port, batch(Array.from({ length: 21 }, (_, i) => item(0, i)))))
  assert.equal(many.status, 413)
  assert.equal(json(many).error, 'too_many_items')
  assert.deepEqual(await codes(port, batch(Array.from({ length: 20 }, (_, i) => item(0, i)))), new Array(20).fill(0))
})

test('http: gzip bodies are accepted; a gzip bomb gets 413 and bad gzip 400', async (t) => {
  const ing = await start(t, { maxBodyBytes: 64 * 1024 })
  const { port } = ing
  const body = batch([item(0, 1), item(0, 2)])
  const r = ok(await postBatch(port, gzipSync(body), { ...AUTH, 'content-encoding': 'gzip' }))
  assert.equal(r.status, 200)
  assert.deepEqual(decodeResponse(r.body).results.map((x) => x[2]), [0, 0])
  // 64 MiB of zeros compress to ~64 KiB; here 16 MiB -> ~16 KiB, under the wire limit.
  const bomb = gzipSync(Buffer.alloc(16 * 1024 * 1024))
  assert.ok(bomb.length < 64 * 1024)
  const b = ok(await postBatch(port, bomb, { ...AUTH, 'content-encoding': 'gzip' }))
  assert.equal(b.status, 413)
  assert.match(String(json(b).message), /decompressed body exceeds maxBodyBytes 65536/)
  const bad = ok(await postBatch(port, Buffer.from('not gzip at all'), { ...AUTH, 'content-encoding': 'gzip' }))
  assert.equal(bad.status, 400)
  assert.equal(json(bad).error, 'bad_gzip')
  assert.equal(process.memoryUsage().rss < 1024 * 1024 * 1024, true)
  await stillServes(port, 3)
  const metrics = ok(await send(port, '/metrics')).body.toString()
  assert.match(metrics, /ingest_received_bytes_total\{encoding="gzip",version="1"\} \d+/)
})

test('http: query API pages readings with a cursor; bad parameters get 400', async (t) => {
  const { port } = await start(t)
  await codes(port, batch(Array.from({ length: 7 }, (_, i) => item(0, i + 1, 'sensor-9'))))
  const seen: number[] = []
  let url = '/v1/devices/sensor-9/readings?limit=3'
  for (let pages = 0; pages < 10; pages++) {
    const page = json(await send(port, url))
    assert.equal(page.device, 'sensor-9')
    const rs = page.readings as { seq: number, gateway: string, epoch: string, p: number, s: number, boot: number, ts: number, rx: number, values: unknown }[]
    seen.push(...rs.map((x) => x.seq))
    assert.deepEqual(Object.keys(rs[0]!).sort(), ['boot', 'epoch', 'gateway', 'p', 'rx', 's', 'seq', 'ts', 'values'])
    if (page.next === null) break
    url = `/v1/devices/sensor-9/readings?limit=3&cursor=${encodeURIComponent(String(page.next))}`
  }
  assert.deepEqual(seen, [1, 2, 3, 4, 5, 6, 7])
  assert.deepEqual(((json(await send(port, '/v1/devices/sensor-9/readings?boot=1&fromSeq=6')).readings) as { seq: number }[]).map((x) => x.seq), [6, 7])
  for (const q of ['limit=0', 'fromSeq=3', 'cursor=zzzz', 'boot=1&fromSeq=x', 'what=1']) {
    const r = ok(await send(port, `/v1/devices/sensor-9/readings?${q}`))
    assert.equal(r.status, 400, q)
    assert.equal(typeof json(r).field, 'string', q)
  }
  assert.equal(ok(await send(port, '/v1/devices/bad%20id/readings')).status, 400)
  assert.equal(json(await send(port, '/healthz')).status, 'ok')
})

test('http: dedup state stays bounded as the gateway\'s floors advance (metric)', async (t) => {
  const { port } = await start(t)
  const gauge = async (): Promise<number> => {
    const m = /^ingest_dedup_tracked_seqs (\d+)$/m.exec(ok(await send(port, '/metrics')).body.toString())
    assert.ok(m, 'gauge present')
    return Number(m[1])
  }
  let max = 0
  for (let b = 0; b < 20; b++) {
    const items = Array.from({ length: 50 }, (_, i) => item(3, b * 50 + i))
    await codes(port, batch(items, { floors: [[3, Math.max(0, b - 1) * 50]] }))
    max = Math.max(max, await gauge())
  }
  assert.ok(max > 0 && max <= 100, `tracked ${max} of 1000 stored`)
  const m = ok(await send(port, '/metrics')).body.toString()
  assert.match(m, /ingest_items_total\{code="stored"\} 1000/)
  assert.match(m, /ingest_http_requests_total\{route="batches",status="200"\} 20/)
  assert.match(m, /ingest_batch_items_bucket\{le="50"\} 20/)
  assert.match(m, /ingest_http_request_duration_seconds_count\{route="batches"\} 20/)
})

test('http: concurrent batches over 8 partitions, with a racing resend, store each item once', async (t) => {
  const { port } = await start(t)
  const bodies = Array.from({ length: 8 }, (_, p) => batch(Array.from({ length: 100 }, (_, i) => item(p, i))))
  const results = await Promise.all([...bodies, bodies[0]!, bodies[5]!].map((b) => codes(port, b)))
  for (const p of [0, 5]) {
    const both = [results[p]!, results[p === 0 ? 8 : 9]!]
    for (let i = 0; i < 100; i++) assert.deepEqual(both.map((r) => r[i]).sort(), [0, 1], `p${p} item ${i}`)
  }
  const stats = json(await send(port, '/v1/stats'))
  assert.equal(stats.stored, 800)
  assert.equal(stats.duplicates, 200)
})

test('http: chaos: per-item retry/reject rates answer 2/3 and store nothing; fail rate gives 5xx', async (t) => {
  const a = await start(t, { chaosRetryRate: 0.5, chaosRejectRate: 0.5, chaosSeed: 9 })
  const r = decodeResponse(ok(await postBatch(a.port, batch(Array.from({ length: 40 }, (_, i) => item(0, i))))).body).results
  const got = new Set(r.map((x) => x[2]))
  assert.deepEqual([...got].sort(), [2, 3])
  assert.ok(r.every((x) => /injected/.test(String(x[3]))))
  const stats = json(await send(a.port, '/v1/stats'))
  assert.equal(stats.stored, 0)
  assert.equal(stats.rejected, r.filter((x) => x[2] === 3).length)
  assert.equal(((json(await send(a.port, '/v1/devices/dev1/readings'))).readings as unknown[]).length, 0)

  const f = await start(t, { chaosFailRate: 1, chaosSeed: 4 })
  const statuses = new Set<number>()
  let retryAfter = false
  for (let i = 0; i < 12; i++) {
    const x = ok(await postBatch(f.port, batch([item(0, i)])))
    statuses.add(x.status)
    if (x.headers['retry-after'] === '1') retryAfter = true
  }
  assert.deepEqual([...statuses].sort(), [500, 503])
  assert.ok(retryAfter, 'some 503s carry Retry-After')
  assert.equal(json(await send(f.port, '/v1/stats')).stored, 0)
})

test('http: chaos drop: the batch is committed, the connection dropped; resending gets duplicate', async (t) => {
  const dataDir = join(await tempDir(t, 'ingest-http-'), 'db')
  const body = batch([item(0, 1), item(0, 2)])
  const dropping = await start(t, { dataDir, chaosDropRate: 1, chaosSeed: 1 })
  const r = await postBatch(dropping.port, body)
  assert.ok('error' in r, 'no answer')
  assert.match(String(r.error.code), /ECONNRESET|ECONNREFUSED|EPIPE/)
  await dropping.close()
  const { port } = await start(t, { dataDir })
  assert.deepEqual(await codes(port, body), [1, 1])
})

test('http: chaos latency delays the answer after the commit', async (t) => {
  const { port } = await start(t, { chaosLatencyMs: 300 })
  const t0 = Date.now()
  assert.deepEqual(await codes(port, batch([item(0, 1)])), [0])
  assert.ok(Date.now() - t0 >= 290)
})

test('http: a slow client is cut off after requestTimeoutMs', async (t) => {
  const { port } = await start(t, { requestTimeoutMs: 1000 })
  const sock = connect(port, '127.0.0.1')
  t.after(() => sock.destroy())
  let closed = false
  let answer = ''
  sock.on('data', (d) => { answer += d.toString() })
  sock.on('close', () => { closed = true })
  sock.on('error', () => {})
  sock.write(`POST /v1/batches HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${SECRET}\r\ncontent-type: application/cbor\r\ncontent-length: 100\r\n\r\n`)
  sock.write(Buffer.alloc(10))
  await waitFor(() => closed, { timeoutMs: 5000, what: 'slow connection closed' })
  assert.match(answer, /^HTTP\/1\.1 408/)
  await stillServes(port, 1)
})

test('cli: dedup survives kill -9 and restart on the same data dir', async (t) => {
  const dir = await tempDir(t, 'ingest-cli-')
  const args = ['--port', '0', '--token', `gw1:${SECRET}`, '--data-dir', join(dir, 'db')]
  const first = await spawnCli(t, 'ingest/main.ts', args)
  assert.equal(typeof first.ready.port, 'number')
  assert.equal(first.ready.host, '127.0.0.1')
  assert.equal(first.ready.sink, 'leveldb')
  const body = batch([item(0, 1), item(0, 2), item(1, 1)])
  assert.deepEqual(await codes(first.ready.port as number, body), [0, 0, 0])
  await first.kill('SIGKILL')
  // LOG_LEVEL above info still prints the ready line (harnesses wait for it).
  const second = await spawnCli(t, 'ingest/main.ts', args, { env: { LOG_LEVEL: 'error' } })
  assert.deepEqual(await codes(second.ready.port as number, body), [1, 1, 1])
  assert.equal(json(await send(second.ready.port as number, '/v1/stats')).stored, 3)
  assert.equal(second.lines.filter((l) => l.msg === 'ready').length, 1)
  await second.kill('SIGTERM')
  assert.deepEqual(await second.exited, { code: 0, signal: null })
})

test('cli: bad config exits 2 naming the field; postgres without a URL is refused clearly', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--port', 'abc', '--token', 'gw1:x-pad-0123456789'], /port/],
    [['--max-items', '0', '--token', 'gw1:x-pad-0123456789'], /maxItems/],
    [['--bogus', '1'], /bogus/],
    [['--port', '0'], /token/],
    [['--port', '0', '--token', 'gw1:x-pad-0123456789', '--sink', 'postgres'], /postgresUrl: sink postgres needs --postgres-url/],
    [['--port', '0', '--tokens-file', '/nonexistent/tokens.json'], /tokensFile/]
  ]
  await Promise.all(cases.map(async ([args, re]) => {
    await assert.rejects(spawnCli(t, 'ingest/main.ts', args, { readyTimeoutMs: 60_000 }), (err: Error) => {
      assert.match(err.message, /exited \(2\)/, args.join(' '))
      assert.match(err.message, re, args.join(' '))
      return true
    })
  }))
})

test('http: evicted ranges from the gateway are counted once (stats and metrics)', async (t) => {
  const { port } = await start(t)
  const body = batch([item(0, 20)], { evicted: [[0, 1, 10]] })
  await codes(port, body)
  await codes(port, body)
  const stats = json(await send(port, '/v1/stats'))
  assert.equal(stats.evicted, 10)
  assert.equal((stats.gateways as Record<string, { evicted: number }>).gw1!.evicted, 10)
  const m = ok(await send(port, '/metrics')).body.toString()
  assert.match(m, /ingest_store_items\{kind="evicted"\} 10/)
  assert.match(m, /ingest_evicted_ranges_received_total 2/)
})

async function inFlight (port: number): Promise<boolean> {
  return /^ingest_batches_in_flight 1$/m.test(ok(await send(port, '/metrics')).body.toString())
}

test('cli: SIGTERM lets an in-flight batch finish, then exits 0', async (t) => {
  const dir = await tempDir(t, 'ingest-cli-')
  const child = await spawnCli(t, 'ingest/main.ts', ['--port', '0', '--token', `gw1:${SECRET}`, '--data-dir', join(dir, 'db'), '--chaos-latency-ms', '1500'])
  const port = child.ready.port as number
  const pending = postBatch(port, batch([item(0, 1)]))
  await waitFor(() => inFlight(port), { what: 'batch in flight' })
  child.proc.kill('SIGTERM')
  const r = ok(await pending)
  assert.equal(r.status, 200)
  assert.deepEqual(decodeResponse(r.body).results, [[0, 1, 0]])
  assert.deepEqual(await child.exited, { code: 0, signal: null })
})

test('cli: a second signal exits at once', async (t) => {
  const dir = await tempDir(t, 'ingest-cli-')
  const child = await spawnCli(t, 'ingest/main.ts', ['--port', '0', '--token', `gw1:${SECRET}`, '--data-dir', join(dir, 'db'), '--chaos-latency-ms', '20000'])
  const port = child.ready.port as number
  void postBatch(port, batch([item(0, 1)]))
  await waitFor(() => inFlight(port), { what: 'batch in flight' })
  const t0 = Date.now()
  child.proc.kill('SIGTERM')
  await waitFor(() => child.lines.some((l) => l.msg === 'shutting down: finishing requests in progress'), { what: 'first signal handled' })
  // past the 0.5 s in which a repeat is the same Ctrl-C (npm's forwarded copy)
  await new Promise((r) => setTimeout(r, 600))
  child.proc.kill('SIGINT')
  assert.deepEqual(await child.exited, { code: 1, signal: null })
  assert.ok(Date.now() - t0 < 5000)
})

test('cli: two SIGINTs 5 ms apart (one Ctrl-C under npm) finish the batch in flight and exit 0', async (t) => {
  const dir = await tempDir(t, 'ingest-cli-')
  const child = await spawnCli(t, 'ingest/main.ts', ['--port', '0', '--token', `gw1:${SECRET}`, '--data-dir', join(dir, 'db'), '--chaos-latency-ms', '1500'])
  const port = child.ready.port as number
  const pending = postBatch(port, batch([item(0, 1)]))
  await waitFor(() => inFlight(port), { what: 'batch in flight' })
  child.proc.kill('SIGINT')
  await new Promise((r) => setTimeout(r, 5))
  child.proc.kill('SIGINT')
  const r = ok(await pending)
  assert.equal(r.status, 200)
  assert.deepEqual(await child.exited, { code: 0, signal: null })
  assert.ok(!child.lines.some((l) => l.msg === 'second signal: exiting now'))
})
