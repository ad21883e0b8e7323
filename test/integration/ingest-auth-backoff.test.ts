/**
 * Wrong tokens at the ingest are throttled per address: after
 * --auth-free-failures wrong tokens from 127.0.0.1, its requests get 429 + Retry-After
 * without their token being checked (a good one too: see auth-backoff.ts for why), on the
 * batch and the read side, counted in ingest_auth_throttled_total; requests without a token
 * do not count; after the ban a good token is served again.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { encodeBatch } from '../../protocol/index.ts'
import { createIngest } from '../../ingest/index.ts'
import { bearer, call } from '../helpers/http.ts'
import { tempDir, waitFor } from '../helpers/index.ts'

const GOOD = 'gw1-secret-0123456789'
const READ = 'read-all-0123456789abc'

test('ingest: wrong tokens from one address lead to 429 + Retry-After, unchecked, until the back-off ends', async (t) => {
  const ing = await createIngest({ port: 0, host: '127.0.0.1', dataDir: join(await tempDir(t), 'db'), token: [`gw1:${GOOD}`], readToken: [`*:${READ}`], authFreeFailures: 3, authBackoffBaseMs: 1500, authBackoffMaxMs: 1500 })
  t.after(() => ing.close())
  const base = `http://127.0.0.1:${ing.port}`
  const batch = encodeBatch({ gateway: 'gw1', epoch: 'e1', batch: 'b1', floors: [[0, 1]], items: [[0, 1, 'd1', 1, 1, 1, 1, { t: 1 }]] })
  const post = (headers: Record<string, string>) => call(`${base}/v1/batches`, { headers: { 'content-type': 'application/cbor', ...headers }, body: batch })

  // no token at all is not a guess: never counted
  for (let i = 0; i < 10; i++) assert.equal((await post({})).status, 401)
  assert.equal((await call(`${base}/v1/stats`)).status, 401)
  assert.equal((await post(bearer(GOOD))).status, 200)

  // 3 free wrong tokens, the 4th starts the back-off
  for (let i = 0; i < 4; i++) assert.equal((await post(bearer(`wrong-token-${i}-0123456789`))).status, 401, `wrong token ${i}`)
  const held = await post(bearer('wrong-token-x-0123456789'))
  assert.equal(held.status, 429)
  assert.ok(Number(held.headers['retry-after']) >= 1, 'Retry-After in seconds')
  assert.match(held.body.toString(), /too_many_failures/)
  assert.equal((await post(bearer(GOOD))).status, 429, 'during the back-off no token is checked, a good one neither')
  assert.equal((await call(`${base}/v1/stats`, { headers: bearer(READ) })).status, 429, 'the read side shares the back-off')
  assert.equal((await call(`${base}/ui/live`, { headers: bearer(READ) })).status, 429)
  assert.equal((await call(`${base}/healthz`)).status, 200, 'probes need no token and are never held back')

  // after the ban: served again, and the counters say what happened
  await waitFor(async () => (await post(bearer(GOOD))).status === 200, { what: 'good token accepted after the back-off', timeoutMs: 10_000 })
  const metrics = (await call(`${base}/metrics`, { headers: bearer(READ) })).body.toString()
  assert.match(metrics, /ingest_auth_failures_total\{side="write"\} 4/)
  assert.match(metrics, /ingest_auth_throttled_total\{side="write"\} [2-9]/)
  assert.match(metrics, /ingest_auth_throttled_total\{side="read"\} 2/)
  assert.match(metrics, /ingest_auth_backoff_addresses 1/)
})

test('ingest: wrong read tokens count too', async (t) => {
  const ing = await createIngest({ port: 0, host: '127.0.0.1', dataDir: join(await tempDir(t), 'db'), token: [`gw1:${GOOD}`], readToken: [`*:${READ}`], authFreeFailures: 2, authBackoffBaseMs: 60_000 })
  t.after(() => ing.close())
  const base = `http://127.0.0.1:${ing.port}`
  for (let i = 0; i < 3; i++) assert.equal((await call(`${base}/v1/devices/d1/readings`, { headers: bearer(`guess-${i}-0123456789abc`) })).status, 401)
  const r = await call(`${base}/v1/stats`, { headers: bearer(READ) })
  assert.equal(r.status, 429)
  assert.ok(Number(r.headers['retry-after']) > 30)
})
