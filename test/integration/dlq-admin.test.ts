/**
 * Dead-letter tools through a running gateway's admin API (issue 12): items the upstream
 * rejected are listed, shown, exported as JSON lines, replayed exactly once after the
 * upstream is fixed, and purged with a filter; every action is counted in /metrics.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AckCode, type ItemResult } from '../../protocol/index.ts'
import { startFakeUpstream } from '../helpers/fake-upstream.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { waitFor } from '../helpers/index.ts'

const post = (base: string, path: string, body: unknown, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<Response> =>
  fetch(base + path, { method: 'POST', headers, body: JSON.stringify(body) })

test('dlq via admin: rejected items are listed, exported, replayed exactly once and purged', async (t) => {
  let reject = true
  const up = await startFakeUpstream(t, (req) => ({
    status: 200,
    results: req.items.map((i) => (reject ? [i[0], i[1], AckCode.Rejected, 'rule: t above 20'] : [i[0], i[1], AckCode.Stored]) as ItemResult)
  }))
  const gw = await startGateway(t, { upstream: [up.url], token: 'x-pad-0123456789', lingerMs: 20, retryBaseMs: 20 })
  const base = `http://127.0.0.1:${gw.adminPort}`
  const dev = await connectDevice(t, gw.mqttPort, 'dlq-a')
  for (let seq = 1; seq <= 6; seq++) await publish(dev, 'devices/dlq-a/readings', reading(seq))
  const junk = await connectDevice(t, gw.mqttPort, 'junk-1')
  await publish(junk, 'devices/junk-1/readings', '{"values":{}}')
  await waitFor(async () => (await (await fetch(base + '/status')).json() as { dlq: { items: number } }).dlq.items === 7, { what: '7 dead letters' })

  const list = await (await fetch(base + '/dlq?kind=item')).json() as { total: number, items: { id: number, device: string, reason: string, kind: string }[] }
  assert.equal(list.total, 7)
  assert.equal(list.items.length, 6)
  assert.ok(list.items.every((x) => x.device === 'dlq-a' && x.reason.includes('rule: t above 20')))
  const all = await (await fetch(base + '/dlq')).json() as { items: { id: number }[] }
  const newest = await (await fetch(base + '/dlq?limit=1&order=newest')).json() as { items: { id: number }[] }
  assert.equal(newest.items[0]!.id, Math.max(...all.items.map((x) => x.id)))
  const one = await (await fetch(`${base}/dlq/${list.items[0]!.id}`)).json() as { raw: string, reading: { seq: number } }
  assert.equal(one.reading.seq, 1)
  assert.ok(one.raw.length > 10)
  const lines = (await (await fetch(base + '/dlq/export?device=dlq-a')).text()).trim().split('\n').map((l) => JSON.parse(l) as { reading: { seq: number } })
  assert.deepEqual(lines.map((l) => l.reading.seq), [1, 2, 3, 4, 5, 6])

  // mutating requests: JSON only, same origin only
  assert.equal((await post(base, '/dlq/replay', {}, { 'content-type': 'text/plain' })).status, 403)
  assert.equal((await post(base, '/dlq/replay', {}, { 'content-type': 'application/json', origin: 'http://evil.example' })).status, 403)
  assert.equal((await post(base, '/dlq/purge', {})).status, 400, 'purge without a filter is refused')

  const dry = await (await post(base, '/dlq/replay', { kind: 'item', dryRun: true })).json() as { replayed: number, wouldReplay: number }
  // a dry run says what it would do, and that it did nothing
  assert.deepEqual([dry.wouldReplay, dry.replayed], [6, 0])
  assert.equal(up.stored.size, 0)
  reject = false // the ingest's rule is fixed
  const r = await (await post(base, '/dlq/replay', { device: 'dlq-a' })).json() as { matched: number, replayed: number, invalidCount: number }
  assert.deepEqual([r.matched, r.replayed, r.invalidCount], [6, 6, 0])
  await waitFor(() => up.stored.size === 6, { what: 'replayed items stored upstream' })
  const seqs = [...up.stored.values()].map((i) => i[3]).sort((a, b) => a! - b!)
  assert.deepEqual(seqs, [1, 2, 3, 4, 5, 6])
  // a second replay finds nothing: the records went with the re-queue, in one batch
  const again = await (await post(base, '/dlq/replay', { device: 'dlq-a' })).json() as { matched: number }
  assert.equal(again.matched, 0)
  // the invalid payload still fails validation: replay keeps it
  const still = await (await post(base, '/dlq/replay', { kind: 'payload' })).json() as { replayed: number, invalidCount: number, invalid: { reason: string }[] }
  assert.deepEqual([still.replayed, still.invalidCount], [0, 1])
  assert.match(still.invalid[0]!.reason, /values/)
  const purged = await (await post(base, '/dlq/purge', { device: 'junk-*' })).json() as { purged: number }
  assert.equal(purged.purged, 1)
  const st = await (await fetch(base + '/status')).json() as { dlq: { items: number } }
  assert.equal(st.dlq.items, 0)
  const metrics = await (await fetch(base + '/metrics')).text()
  assert.match(metrics, /gateway_dlq_actions_total\{action="replay"\} 4/)
  // records replayed: the dry run replayed none (it counted as an action, not as 6 records)
  assert.match(metrics, /gateway_dlq_action_items_total\{action="replay"\} 6/)
  assert.match(metrics, /gateway_dlq_actions_total\{action="purge"\} 1/)
  assert.equal(up.stored.size, 6, 'nothing stored twice')
})

test('admin token: required off loopback; the page and API need it, probes do not', async (t) => {
  const { parseGatewayConfig } = await import('../../gateway/config.ts')
  assert.throws(() => parseGatewayConfig({ argv: ['--admin-host', '0.0.0.0'], env: {} }), /admin-token/)
  const gw = await startGateway(t, { adminToken: 's3cret-pad-01234' })
  const base = `http://127.0.0.1:${gw.adminPort}`
  assert.equal((await fetch(base + '/healthz')).status, 200)
  assert.equal((await fetch(base + '/status')).status, 401)
  assert.equal((await fetch(base + '/')).status, 401)
  assert.equal((await fetch(base + '/dlq/purge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"all":true}' })).status, 401)
  assert.equal((await fetch(base + '/status', { headers: { authorization: 'Bearer wrong' } })).status, 401)
  assert.equal((await fetch(base + '/status', { headers: { authorization: 'Bearer s3cret-pad-01234' } })).status, 200)
  const login = await fetch(base + '/?token=s3cret-pad-01234', { redirect: 'manual' })
  assert.equal(login.status, 303)
  const cookie = login.headers.get('set-cookie')!.split(';')[0]!
  assert.match(login.headers.get('set-cookie')!, /HttpOnly; SameSite=Strict/)
  const page = await fetch(base + '/', { headers: { cookie } })
  assert.equal(page.status, 200)
  assert.match(await page.text(), /<title>Gateway<\/title>/)
})
