/**
 * The ingest on a real network (docs/security-tls.md): the read side behind read
 * tokens bound to fleets, readings scoped by fleet, query pages capped in readings and
 * bytes, partitions and epochs bounded, HTTPS with gateway client certificates.
 */
import assert from 'node:assert/strict'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test, type TestContext } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import { AckCode, decodeResponse, encodeBatch, type BatchItem, type BatchRequest } from '../../protocol/index.ts'
import { createIngest, type Ingest, type IngestOptions } from '../../ingest/index.ts'
import { ReadAuth } from '../../ingest/read-auth.ts'
import { makeCa, makeCert } from '../helpers/certs.ts'
import { bearer, call, jsonOf, type TlsOpts } from '../helpers/http.ts'
import { spawnCli, tempDir, waitFor } from '../helpers/index.ts'

const R_NORTH = 'read-north-0123456789'
const R_ALL = 'read-all-0123456789abc'
const RX = 1_790_000_000_000

function item (p: number, s: number, device = 'd1'): BatchItem {
  return [p, s, device, s, 1, RX - 3, RX + s, { t: 21.5, n: s }]
}

function body (gateway: string, items: BatchItem[], extra: Partial<Omit<BatchRequest, 'v'>> = {}): Buffer {
  const floors = [...new Set(items.map((i) => i[0]))].map((p) => [p, Math.min(...items.filter((i) => i[0] === p).map((i) => i[1]))] as [number, number])
  return encodeBatch({ gateway, epoch: 'ep1', batch: `b-${gateway}-${items[0]?.[1] ?? 0}`, floors, items, ...extra })
}

async function post (base: string, b: Buffer, headers: Record<string, string> = {}, tls?: TlsOpts) {
  return call(`${base}/v1/batches`, { headers: { 'content-type': 'application/cbor', ...headers }, body: b, ...(tls ? { tls } : {}) })
}

async function codes (base: string, b: Buffer, headers: Record<string, string>, tls?: TlsOpts): Promise<number[]> {
  const r = await post(base, b, headers, tls)
  assert.equal(r.status, 200, r.body.toString())
  return decodeResponse(r.body).results.map((x) => x[2])
}

async function fleetIngest (t: TestContext, opts: IngestOptions = {}): Promise<{ ing: Ingest, base: string, dir: string }> {
  const dir = await tempDir(t, 'ingest-sec-')
  const tokensFile = join(dir, 'tokens.json')
  await writeFile(tokensFile, JSON.stringify({ gwA: { secret: 'sec-gwA-pad-0123', fleet: 'north' }, gwB: { secret: 'sec-gwB-pad-0123', fleet: 'south' }, gwC: { fleet: 'north' } }))
  const ing = await createIngest({ port: 0, host: '127.0.0.1', dataDir: join(dir, 'db'), token: ['gw1:sec-gw1-pad-0123'], tokensFile, readToken: [`north:${R_NORTH}`, `*:${R_ALL}`], ...opts })
  t.after(() => ing.close())
  return { ing, base: `${ing.scheme}://127.0.0.1:${ing.port}`, dir }
}

type Page = { readings: { gateway: string, seq: number }[], next: string | null }

test('ingest read side: read tokens, fleets, /metrics for fleet * only, /healthz open', async (t) => {
  const { base } = await fleetIngest(t)
  // gwB (fleet south) writes readings under the same device id as gwA (fleet north)
  assert.deepEqual(await codes(base, body('gwA', [item(0, 1), item(0, 2), item(0, 3)]), bearer('sec-gwA-pad-0123')), [0, 0, 0])
  assert.deepEqual(await codes(base, body('gwB', [item(0, 1), item(0, 2), item(0, 3)]), bearer('sec-gwB-pad-0123')), [0, 0, 0])
  const url = `${base}/v1/devices/d1/readings`
  assert.equal((await call(url)).status, 401)
  assert.equal((await call(url, { headers: bearer('sec-gwA-pad-0123') })).status, 401, 'a gateway token is not a read token')
  assert.equal((await call(url, { headers: bearer('x'.repeat(20)) })).status, 401)
  const north = jsonOf<Page>(await call(url, { headers: bearer(R_NORTH) }))
  assert.deepEqual(north.readings.map((r) => r.gateway), ['gwA', 'gwA', 'gwA'], 'fleet north sees only its gateways')
  const all = jsonOf<Page>(await call(url, { headers: bearer(R_ALL) }))
  assert.equal(all.readings.length, 6)
  const onlyB = jsonOf<Page>(await call(`${url}?gateway=gwB`, { headers: bearer(R_ALL) }))
  assert.deepEqual(onlyB.readings.map((r) => r.gateway), ['gwB', 'gwB', 'gwB'])
  assert.equal((await call(`${url}?gateway=gwB`, { headers: bearer(R_NORTH) })).status, 403)
  assert.equal(jsonOf<Page>(await call(`${url}?gateway=gwA`, { headers: bearer(R_NORTH) })).readings.length, 3)

  assert.equal((await call(`${base}/v1/stats`)).status, 401)
  const sNorth = jsonOf<{ stored: number, gateways: Record<string, unknown> }>(await call(`${base}/v1/stats`, { headers: bearer(R_NORTH) }))
  assert.equal(sNorth.stored, 3)
  assert.deepEqual(Object.keys(sNorth.gateways), ['gwA'])
  assert.equal(jsonOf<{ stored: number }>(await call(`${base}/v1/stats`, { headers: bearer(R_ALL) })).stored, 6)

  assert.equal((await call(`${base}/metrics`)).status, 401)
  assert.equal((await call(`${base}/metrics`, { headers: bearer(R_NORTH) })).status, 403)
  const m = await call(`${base}/metrics`, { headers: bearer(R_ALL) })
  assert.equal(m.status, 200)
  assert.match(m.body.toString(), /ingest_items_total/)
  assert.equal((await call(`${base}/healthz`)).status, 200)
})

type Live = { fleet: string, stats: { stored: number, gateways: Record<string, unknown> }, batchSeconds: unknown[], tracked: number, readings: { fleet: string, device: string, gateway: string }[] }

test('ingest page data /ui/live: read token needed, scoped to the token\'s fleet', async (t) => {
  const { base } = await fleetIngest(t)
  // both fleets write the same device id d1, and one device of their own each
  assert.deepEqual(await codes(base, body('gwA', [item(0, 1), item(0, 2, 'north-only')]), bearer('sec-gwA-pad-0123')), [0, 0])
  assert.deepEqual(await codes(base, body('gwB', [item(0, 1), item(0, 2, 'south-only')]), bearer('sec-gwB-pad-0123')), [0, 0])
  const live = `${base}/ui/live?limit=50`
  const none = await call(live)
  assert.equal(none.status, 401)
  assert.doesNotMatch(none.body.toString(), /gwB|south-only/)
  assert.equal((await call(live, { headers: bearer('sec-gwA-pad-0123') })).status, 401, 'a gateway token is not a read token')
  const north = jsonOf<Live>(await call(live, { headers: bearer(R_NORTH) }))
  assert.equal(north.fleet, 'north')
  assert.deepEqual(Object.keys(north.stats.gateways), ['gwA'])
  assert.equal(north.stats.stored, 2)
  assert.deepEqual(north.readings.map((r) => `${r.gateway}/${r.device}`).sort(), ['gwA/d1', 'gwA/north-only'])
  assert.equal(north.tracked, 2)
  assert.deepEqual(north.batchSeconds, [], 'the latency histogram counts every fleet\'s batches: fleet * only')
  const searched = jsonOf<Live>(await call(`${live}&q=only`, { headers: bearer(R_NORTH) }))
  assert.deepEqual(searched.readings.map((r) => r.device), ['north-only'])
  const all = jsonOf<Live>(await call(live, { headers: bearer(R_ALL) }))
  assert.deepEqual(Object.keys(all.stats.gateways).sort(), ['gwA', 'gwB'])
  assert.deepEqual(all.readings.map((r) => `${r.fleet}/${r.device}`).sort(), ['north/d1', 'north/north-only', 'south/d1', 'south/south-only'], 'a device id of two fleets is two entries')
  assert.ok(all.batchSeconds.length > 0)
  // the page itself holds no data: it loads without a token and asks for one
  const page = await call(`${base}/`)
  assert.equal(page.status, 200)
  assert.match(page.body.toString(), /id="token-form"/)
  assert.equal((await call(`${base}/assets/app.js`)).status, 200)
})

test('ingest read side: no read token on a non-loopback address is a startup error', async () => {
  const base = { token: ['gw1:s-pad-0123456789'], readToken: [] as string[], allowAnonymousRead: false }
  await assert.rejects(ReadAuth.create({ ...base, host: '0.0.0.0' }), /readToken: .*--read-token FLEET:SECRET/)
  await ReadAuth.create({ ...base, host: '0.0.0.0', allowAnonymousRead: true })
  await ReadAuth.create({ ...base, host: '127.0.0.1' })
  await assert.rejects(ReadAuth.create({ ...base, host: '127.0.0.1', readToken: ['north:short'] }), /at least 16/)
})

test('ingest query: limit is capped and pages stop at maxResponseBytes; cursors deliver every reading once', async (t) => {
  const { base } = await fleetIngest(t, { maxResponseBytes: 4096 })
  const items = Array.from({ length: 1500 }, (_, i) => item(0, i + 1, 'big'))
  assert.ok((await codes(base, body('gw1', items), bearer('sec-gw1-pad-0123'))).every((c) => c === AckCode.Stored))
  const seen: number[] = []
  let url: string | null = `${base}/v1/devices/big/readings?limit=10000`
  let pages = 0
  while (url !== null) {
    const r = await call(url, { headers: bearer(R_ALL) })
    assert.equal(r.status, 200, r.body.toString())
    assert.ok(r.body.length < 3 * 4096 + 1024, `page of ${r.body.length} bytes`)
    const p = jsonOf<Page>(r)
    assert.ok(p.readings.length <= 1000)
    seen.push(...p.readings.map((x) => x.seq))
    pages++
    url = p.next === null ? null : `${base}/v1/devices/big/readings?limit=10000&cursor=${encodeURIComponent(p.next)}`
  }
  assert.deepEqual(seen, items.map((i) => i[1]))
  assert.ok(pages > 10, `${pages} pages`)
})

test('ingest query: without a byte cap a page holds at most 1000 readings', async (t) => {
  const { base } = await fleetIngest(t)
  await codes(base, body('gw1', Array.from({ length: 1200 }, (_, i) => item(0, i + 1, 'cap'))), bearer('sec-gw1-pad-0123'))
  const p = jsonOf<Page>(await call(`${base}/v1/devices/cap/readings?limit=10000`, { headers: bearer(R_ALL) }))
  assert.equal(p.readings.length, 1000)
  assert.notEqual(p.next, null)
})

test('ingest bounds: partitions beyond --max-partitions are rejected; epochs in memory are capped per gateway', async (t) => {
  const { ing, base } = await fleetIngest(t, { maxPartitions: 64, dedupEpochsPerGateway: 4 })
  const auth = bearer('sec-gw1-pad-0123')
  // an item in partition 5000: rejected with a reason; the others are stored
  const r = await post(base, encodeBatch({ gateway: 'gw1', epoch: 'ep1', batch: 'p', floors: [[0, 1]], items: [item(0, 1), item(5000, 1)] }), auth)
  assert.equal(r.status, 200)
  const res = decodeResponse(r.body).results
  assert.deepEqual(res.map((x) => x[2]), [AckCode.Stored, AckCode.Rejected])
  assert.match(String(res[1]![3]), /partition 5000/)
  // floors for partitions 0..65535: 400, nothing kept
  const flood = await post(base, encodeBatch({ gateway: 'gw1', epoch: 'ep-flood', batch: 'f', floors: Array.from({ length: 65536 }, (_, p) => [p, 1] as [number, number]), items: [] }), auth)
  assert.equal(flood.status, 400)
  assert.match(flood.body.toString(), /partition_out_of_range/)

  // 40 epochs x 64 partitions: the dedup state of at most 4 epochs stays in memory
  for (let e = 0; e < 40; e++) {
    const floors = Array.from({ length: 64 }, (_, p) => [p, 1] as [number, number])
    assert.deepEqual(await codes(base, encodeBatch({ gateway: 'gw1', epoch: `ep-${e}`, batch: `e${e}`, floors, items: [item(e % 64, 1, `e${e}`)] }), auth), [AckCode.Stored])
  }
  const st = ing.sink.dedupState!()
  assert.ok(st.partitions <= 4 * 64, `dedup partitions in memory: ${st.partitions}`)
  assert.ok((st.epochs ?? Infinity) <= 4, `epochs in memory: ${st.epochs}`)
  // an evicted epoch's answers do not change: its state reloads from disk
  assert.deepEqual(await codes(base, encodeBatch({ gateway: 'gw1', epoch: 'ep-0', batch: 'again', floors: [[0, 1]], items: [item(0, 1, 'e0')] }), auth), [AckCode.Duplicate])
})

async function rssMiB (pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
  return Number(m![1]) / 1024
}

test('ingest bounds: a partition flood under fresh epochs does not grow the ingest (RSS)', async (t) => {
  const dir = await tempDir(t, 'ingest-rss-')
  const ing = await spawnCli(t, 'ingest/main.ts', ['--port', '0', '--data-dir', join(dir, 'db'), '--token', 'gw1:sec-gw1-pad-0123'])
  const base = `http://127.0.0.1:${ing.ready.port as number}`
  const pid = ing.proc.pid!
  await codes(base, body('gw1', [item(0, 1)]), bearer('sec-gw1-pad-0123'))
  const before = await rssMiB(pid)
  const floors = Array.from({ length: 65536 }, (_, p) => [p, 1] as [number, number])
  const deadline = Date.now() + 30_000
  for (let e = 0; e < 12 && Date.now() < deadline; e++) {
    await post(base, encodeBatch({ gateway: 'gw1', epoch: `flood-${e}`, batch: `f${e}`, floors, items: [item(0, 1, `f${e}`)] }), bearer('sec-gw1-pad-0123'))
  }
  const after = await rssMiB(pid)
  assert.ok(after - before < 64, `RSS grew from ${before.toFixed(0)} to ${after.toFixed(0)} MiB`)
  // Another device: (d1, boot 1, seq 1) is stored already, and its natural key would make a copy a duplicate.
  assert.deepEqual(await codes(base, body('gw1', [item(1, 1, 'd2')]), bearer('sec-gw1-pad-0123')), [AckCode.Stored], 'still serves')
})

test('ingest https: gateway client certificates are mapped to gateway ids; SIGHUP-style reload', async (t) => {
  const dir = await tempDir(t, 'ingest-tls-')
  const ca = await makeCa(dir, 'ca')
  const rogue = await makeCa(await tempDir(t), 'rogue')
  const [server, gwC, gwA, stranger, expiredC, rogueC] = await Promise.all([
    makeCert(ca, 'ingest'), makeCert(ca, 'gwC'), makeCert(ca, 'gwA'), makeCert(ca, 'stranger'), makeCert(ca, 'gwC', { expired: true, file: 'gwC-expired' }), makeCert(rogue, 'gwC')
  ])
  const { ing, base } = await fleetIngest(t, { tlsCert: server.certPath, tlsKey: server.keyPath, tlsCa: ca.certPath })
  assert.equal(ing.scheme, 'https')
  const tlsC = { ca: ca.cert, cert: gwC.cert, key: gwC.key }
  // gwC has no secret: its certificate alone authenticates it
  assert.deepEqual(await codes(base, body('gwC', [item(0, 1, 'c1')]), {}, tlsC), [AckCode.Stored])
  // its certificate cannot write as another gateway
  assert.equal((await post(base, body('gwA', [item(0, 2, 'c1')]), {}, tlsC)).status, 403)
  assert.equal((await post(base, body('gwC', [item(0, 2, 'c1')]), bearer('sec-gwA-pad-0123'), tlsC)).status, 403, 'token of another gateway')
  assert.equal((await post(base, body('stranger', [item(0, 1)]), {}, { ca: ca.cert, cert: stranger.cert, key: stranger.key })).status, 403, 'CN not in the tokens config')
  // a token still works without a certificate (client certificates are optional here)
  assert.deepEqual(await codes(base, body('gwA', [item(0, 1, 'a1')]), bearer('sec-gwA-pad-0123'), { ca: ca.cert }), [AckCode.Stored])
  assert.deepEqual(await codes(base, body('gwA', [item(0, 2, 'a1')]), {}, { ca: ca.cert, cert: gwA.cert, key: gwA.key }), [AckCode.Stored])
  // unverifiable certificates authenticate nobody
  assert.equal((await post(base, body('gwC', [item(0, 3, 'c1')]), {}, { ca: ca.cert, cert: expiredC.cert, key: expiredC.key })).status, 401)
  assert.equal((await post(base, body('gwC', [item(0, 3, 'c1')]), {}, { ca: ca.cert, cert: rogueC.cert, key: rogueC.key })).status, 401)
  // the client refuses an ingest certificate from a CA it does not trust
  await assert.rejects(post(base, body('gwA', [item(0, 3)]), bearer('sec-gwA-pad-0123'), { ca: rogue.cert }), /self-signed|unable to verify|certificate/i)

  // reload: a new server certificate for new handshakes
  const serial = async (): Promise<string> => await new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: ing.port, ca: ca.cert, servername: 'localhost' }, () => { resolve(s.getPeerCertificate().serialNumber); s.destroy() })
    s.once('error', reject)
  })
  const s0 = await serial()
  const next = await makeCert(ca, 'ingest-2')
  await writeFile(server.keyPath, next.key)
  await writeFile(server.certPath, next.cert)
  assert.equal(await ing.reloadTls(), true)
  await waitFor(async () => (await serial()) !== s0, { timeoutMs: 5000, what: 'new certificate served' })
})

test('ingest https: --tls-require-client-cert refuses handshakes without a valid certificate', async (t) => {
  const dir = await tempDir(t, 'ingest-mtls-')
  const ca = await makeCa(dir, 'ca')
  const rogue = await makeCa(await tempDir(t), 'rogue')
  const [server, gwC, expiredC, rogueC] = await Promise.all([makeCert(ca, 'ingest'), makeCert(ca, 'gwC'), makeCert(ca, 'gwC', { expired: true, file: 'x' }), makeCert(rogue, 'gwC')])
  const { base } = await fleetIngest(t, { tlsCert: server.certPath, tlsKey: server.keyPath, tlsCa: ca.certPath, tlsRequireClientCert: true })
  assert.deepEqual(await codes(base, body('gwC', [item(0, 1)]), {}, { ca: ca.cert, cert: gwC.cert, key: gwC.key }), [AckCode.Stored])
  for (const tls of [{ ca: ca.cert }, { ca: ca.cert, cert: expiredC.cert, key: expiredC.key }, { ca: ca.cert, cert: rogueC.cert, key: rogueC.key }]) {
    await assert.rejects(post(base, body('gwA', [item(0, 2)]), bearer('sec-gwA-pad-0123'), tls), /certificate|alert|socket hang up|ECONNRESET/i)
  }
})
