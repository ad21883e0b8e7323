/**
 * A `POST /v1/devices/{id}/commands?wait=MS` whose caller disconnects stops waiting at once.
 * It used to wait on until its `wait` ran out (up to --command-max-wait-ms, 5 min), one
 * waiter and its store re-reads every 250 ms per abandoned request: a caller that times out
 * and retries in a loop piled them up. The command itself stays created (only the waiter
 * goes), and a caller that stays gets its answer as before.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { join } from 'node:path'
import { test } from 'node:test'
import { encodeReportsRequest } from '../../protocol/commands.ts'
import { createIngest } from '../../ingest/index.ts'
import { silentLogger } from '../helpers/gateway.ts'
import { bearer, call, jsonOf } from '../helpers/http.ts'
import { tempDir, waitFor } from '../helpers/index.ts'

const GW = 'sec-gwA-pad-0123'
const CMD = 'cmd-default-0123456789'

test('a caller that aborts a long ?wait takes its waiter with it at once; the command stays', async (t) => {
  const dir = await tempDir(t, 'ingest-cmd-wait-')
  const ing = await createIngest({ port: 0, host: '127.0.0.1', dataDir: join(dir, 'db'), token: [`gwA:${GW}`], commandToken: [`default:${CMD}`] }, { logger: silentLogger })
  t.after(() => ing.close())
  const base = `http://127.0.0.1:${ing.port}`
  const presence = await call(`${base}/v1/gateway/command-reports`, { headers: { 'content-type': 'application/cbor', ...bearer(GW) }, body: encodeReportsRequest({ gateway: 'gwA', batch: 'b1', reports: [], presence: [['dev1', 1, Date.now()]] }) })
  assert.equal(presence.status, 200, presence.body.toString())

  // a caller that waits up to 60 s, then goes away after 0 s of it
  const body = Buffer.from(JSON.stringify({ name: 'reboot' }))
  const req = request(`${base}/v1/devices/dev1/commands?wait=60000`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': body.length, ...bearer(CMD) } })
  const failed = new Promise<Error>((resolve) => req.on('error', resolve))
  req.on('response', () => assert.fail('the waiting POST answered before its caller went away'))
  req.end(body)
  t.after(() => { req.destroy() })
  await waitFor(() => ing.commands.waiters === 1, { timeoutMs: 10_000, what: 'the POST waiting for its command' })

  const t0 = Date.now()
  req.destroy()
  await failed
  await waitFor(() => ing.commands.waiters === 0, { timeoutMs: 5000, intervalMs: 10, what: 'the waiter gone after its caller' })
  const tookMs = Date.now() - t0
  assert.ok(tookMs < 2000, `the waiter went ${tookMs} ms after its caller, not at once`)

  // the command was created and is still there, waiting for its gateway
  const list = jsonOf<{ commands: Array<{ state: string, name: string }> }>(await call(`${base}/v1/commands?device=dev1`, { headers: bearer(CMD) }))
  assert.deepEqual(list.commands.map((c) => [c.name, c.state]), [['reboot', 'queued']])

  // a caller that stays still gets its 202 when its wait runs out
  const stayed = await call(`${base}/v1/devices/dev1/commands?wait=300`, { headers: { 'content-type': 'application/json', ...bearer(CMD) }, body: Buffer.from(JSON.stringify({ name: 'ping' })) })
  assert.equal(stayed.status, 202, stayed.body.toString())
  assert.equal(ing.commands.waiters, 0)
})

/**
 * The gateways' long poll (`GET /v1/gateway/commands?wait=MS`) ends at once when its gateway
 * hangs up. It used to look at the socket only when it re-read the gateway's pending work,
 * about once a second, so a gateway that reconnected in a loop (a flapping link) held a poll
 * and its store reads for up to a second per hang-up.
 */
test('a gateway that hangs up on its long poll takes the poll with it at once', async (t) => {
  const dir = await tempDir(t, 'ingest-cmd-poll-')
  const ing = await createIngest({ port: 0, host: '127.0.0.1', dataDir: join(dir, 'db'), token: [`gwA:${GW}`], commandToken: [`default:${CMD}`] }, { logger: silentLogger })
  t.after(() => ing.close())
  const base = `http://127.0.0.1:${ing.port}`

  // the poll is parked on its wake event once it has read the gateway's pending work
  let reads = 0
  const store = ing.commands.store
  const read = store.openForGateway.bind(store)
  store.openForGateway = async (...a) => { const x = await read(...a); reads++; return x }

  const req = request(`${base}/v1/gateway/commands?wait=30000`, { agent: false, headers: bearer(GW) })
  const failed = new Promise<Error>((resolve) => req.on('error', resolve))
  req.on('response', () => assert.fail('the long poll answered before its gateway hung up'))
  req.end()
  t.after(() => { req.destroy() })
  await waitFor(() => ing.commands.pollers === 1 && reads === 1, { timeoutMs: 10_000, what: 'the long poll waiting' })

  const t0 = Date.now()
  req.destroy()
  await failed
  await waitFor(() => ing.commands.pollers === 0, { timeoutMs: 5000, intervalMs: 5, what: 'the poll gone after its gateway' })
  const tookMs = Date.now() - t0
  assert.ok(tookMs < 200, `the poll went ${tookMs} ms after its gateway hung up, not at once`)

  // a gateway that stays gets its (empty) answer when its wait runs out
  const stayed = await call(`${base}/v1/gateway/commands?wait=300`, { headers: bearer(GW) })
  assert.equal(stayed.status, 200, stayed.body.toString())
  assert.equal(ing.commands.pollers, 0)
})

test('/metrics: ingest_command_waiters counts the callers waiting on ?wait and the gateways\' long polls in progress', async (t) => {
  const dir = await tempDir(t, 'ingest-cmd-waiters-')
  const ing = await createIngest({ port: 0, host: '127.0.0.1', dataDir: join(dir, 'db'), token: [`gwA:${GW}`], commandToken: [`default:${CMD}`] }, { logger: silentLogger })
  t.after(() => ing.close())
  const base = `http://127.0.0.1:${ing.port}`
  const waiters = async (): Promise<Record<string, number>> => {
    const m = await call(`${base}/metrics`)
    assert.equal(m.status, 200, m.body.toString())
    return Object.fromEntries([...m.body.toString().matchAll(/^ingest_command_waiters\{kind="([a-z]+)"\} (\d+)$/gm)].map((x) => [x[1]!, Number(x[2])]))
  }
  assert.deepEqual(await waiters(), { caller: 0, gateway: 0 })
  const presence = await call(`${base}/v1/gateway/command-reports`, { headers: { 'content-type': 'application/cbor', ...bearer(GW) }, body: encodeReportsRequest({ gateway: 'gwA', batch: 'b1', reports: [], presence: [['dev1', 1, Date.now()]] }) })
  assert.equal(presence.status, 200, presence.body.toString())

  // two callers waiting for their commands, one gateway polling (it has just been offered both)
  const posts = ['ping', 'reboot'].map((name) => call(`${base}/v1/devices/dev1/commands?wait=3000`, { headers: { 'content-type': 'application/json', ...bearer(CMD) }, body: Buffer.from(JSON.stringify({ name })) }))
  await waitFor(() => ing.commands.waiters === 2, { timeoutMs: 10_000, what: 'both POSTs waiting' })
  assert.equal((await call(`${base}/v1/gateway/commands?wait=0`, { headers: bearer(GW) })).status, 200)
  const poll = call(`${base}/v1/gateway/commands?wait=2500`, { headers: bearer(GW) })
  await waitFor(() => ing.commands.pollers === 1, { timeoutMs: 10_000, what: 'the long poll waiting' })
  assert.deepEqual(await waiters(), { caller: 2, gateway: 1 })

  // their waits run out: 202 for the callers, 200 for the gateway, and nobody waits any more
  assert.deepEqual((await Promise.all(posts)).map((a) => a.status), [202, 202])
  assert.equal((await poll).status, 200)
  assert.deepEqual(await waiters(), { caller: 0, gateway: 0 })
})
