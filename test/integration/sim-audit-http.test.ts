import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { test } from 'node:test'
import { fetchReadings, runAudit, waitForDrain } from '../../device-sim/index.ts'
import { newBoot, type DeviceRecord } from '../../device-sim/record.ts'

type Row = { gateway: string, epoch: string, p: number, s: number, seq: number, boot: number | string, ts: number, rx: number, values: Record<string, number> }

/** A fake ingest query API (docs/design.md section 7) with small pages and opaque cursors. */
async function fakeIngest (t: { after: (fn: () => unknown) => void }, data: Map<string, Row[]>, opts: { pageSize?: number, buffered?: () => number, stats?: () => number } = {}) {
  const requests: string[] = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url!, 'http://x')
    requests.push(u.pathname + u.search)
    const json = (code: number, body: unknown): void => { res.writeHead(code, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)) }
    if (u.pathname === '/v1/stats') return json(200, { stored: opts.stats?.() ?? 0, duplicates: 0, rejected: 0, evicted: 0, gateways: {} })
    if (u.pathname === '/status') return json(200, { gateway: 'gw1', buffered: { items: opts.buffered?.() ?? 0, bytes: 0 } })
    const m = /^\/v1\/devices\/([^/]+)\/readings$/.exec(u.pathname)
    if (!m) return json(404, { error: 'not_found', message: 'no route' })
    const id = decodeURIComponent(m[1]!)
    const boot = u.searchParams.get('boot')
    const limit = Number(u.searchParams.get('limit') ?? 100)
    const size = Math.min(limit, opts.pageSize ?? 7)
    const all = (data.get(id) ?? []).filter((r) => boot === null || String(r.boot) === boot)
    const cursor = u.searchParams.get('cursor')
    const from = cursor ? Number(Buffer.from(cursor, 'base64url').toString()) : 0
    const page = all.slice(from, from + size)
    const next = from + size < all.length ? Buffer.from(String(from + size)).toString('base64url') : null
    json(200, { device: id, readings: page, next })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => server.close(() => r())))
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, requests }
}

function rowsFor (boot: number, seqs: number[]): Row[] {
  return seqs.map((seq, i) => ({ gateway: 'gw1', epoch: 'e1', p: 1, s: 10 + i, seq, boot, ts: 1, rx: 2, values: { t: 1 } }))
}
const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i)

function device (id: string, boots: [number, number, number][]): DeviceRecord {
  return {
    id,
    boots: boots.map(([b, gen, acked]) => { const r = newBoot(b); r.generated = gen; r.published.addRange(1, gen); r.acked.addRange(1, acked); return r })
  }
}

test('fetchReadings follows cursors across pages and filters by boot', async (t) => {
  const data = new Map([['dev-1', [...rowsFor(5, range(1, 50)), ...rowsFor(6, range(1, 3))]]])
  const ing = await fakeIngest(t, data, { pageSize: 7 })
  const rows = await fetchReadings(ing.url, 'dev-1', 5)
  assert.equal(rows.length, 50)
  assert.deepEqual(rows.map((r) => r.seq), range(1, 50))
  assert.equal(ing.requests.length, 8) // ceil(50 / 7)
  assert.ok(ing.requests.every((r) => r.includes('boot=5')))
  assert.ok(ing.requests.slice(1).every((r) => r.includes('cursor=')))
})

test('runAudit over HTTP: clean devices pass; a deleted and a duplicated record fail', async (t) => {
  const data = new Map<string, Row[]>([
    ['dev-ok', [...rowsFor(100, range(1, 30)), ...rowsFor(101, range(1, 12))]],
    ['dev-lost', rowsFor(100, range(1, 30).filter((s) => s !== 9))],
    ['dev-dup', rowsFor(100, [...range(1, 20), 20, ...range(21, 30)])],
    ['dev-reboot', rowsFor(100, range(1, 25))]
  ])
  const ing = await fakeIngest(t, data, { pageSize: 4 })
  const records = [
    device('dev-ok', [[100, 30, 30], [101, 12, 12]]),
    device('dev-lost', [[100, 30, 30]]),
    device('dev-dup', [[100, 30, 30]]),
    device('dev-reboot', [[100, 30, 25]]) // 26..30 never acknowledged, lost on a reboot
  ]
  let progress = 0
  const res = await runAudit(records, { ingestUrl: ing.url, concurrency: 2, onProgress: (p) => { progress = p.done } })
  assert.equal(progress, 4)
  assert.equal(res.ok, false)
  assert.equal(res.failedDevices, 2)
  assert.deepEqual(res.failures.map((f) => f.id).sort(), ['dev-dup', 'dev-lost'])
  const by = new Map(res.perDevice.map((d) => [d.id, d]))
  assert.equal(by.get('dev-ok')!.ok, true)
  assert.equal(by.get('dev-ok')!.stored, 42)
  assert.equal(by.get('dev-lost')!.lost, 1)
  assert.deepEqual(by.get('dev-lost')!.boots[0]!.lostRanges, [[9, 9]])
  assert.equal(by.get('dev-dup')!.duplicated, 1)
  assert.equal(by.get('dev-reboot')!.ok, true)
  assert.equal(by.get('dev-reboot')!.unackedLost, 5)
  assert.equal(res.totals.acknowledged, 30 + 12 + 30 + 30 + 25)
  // without the injected faults, the same run passes
  data.set('dev-lost', rowsFor(100, range(1, 30)))
  data.set('dev-dup', rowsFor(100, range(1, 30)))
  assert.equal((await runAudit(records, { ingestUrl: ing.url })).ok, true)
})

test('an ingest that is down or answers garbage is an error, not a pass', async (t) => {
  const ing = await fakeIngest(t, new Map())
  await assert.rejects(runAudit([device('x', [[1, 3, 3]])], { ingestUrl: ing.url + '/nope' }), /HTTP 404/)
  await assert.rejects(fetchReadings('http://127.0.0.1:1', 'x', 1), /failed/)
})

test('waitForDrain waits for the gateway buffer to empty, bounded', async (t) => {
  let buffered = 30
  let stored = 0
  const ing = await fakeIngest(t, new Map(), { buffered: () => { if (buffered > 0) { buffered -= 10; stored += 10 } return buffered }, stats: () => stored })
  const seen: number[] = []
  const r = await waitForDrain({ ingestUrl: ing.url, gatewayAdmin: ing.url, timeoutMs: 10_000, pollMs: 10, stableMs: 50, onProgress: (p) => { if (p.gatewayBuffered !== undefined) seen.push(p.gatewayBuffered) } })
  assert.equal(r.settled, true)
  assert.deepEqual(seen.slice(0, 3), [20, 10, 0])
  // a gateway that never drains: the wait gives up at the timeout
  const stuck = await fakeIngest(t, new Map(), { buffered: () => 5 })
  const r2 = await waitForDrain({ ingestUrl: stuck.url, gatewayAdmin: stuck.url, timeoutMs: 200, pollMs: 20 })
  assert.equal(r2.settled, false)
  assert.ok(r2.waitedMs >= 200)
})
