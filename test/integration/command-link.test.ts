/**
 * The gateway's command link (gateway/commands/link-http.ts, link-mqtt.ts, links.ts): the
 * HTTP link against a small fake ingest speaking the protocol codecs (long poll, one
 * message at a time, offered again after a refusal, auth, 404, failover, reports answered,
 * refused, unanswered), and the MQTT link against a throwaway Mosquitto (a persistent
 * session keeps commands while the link is away, no PUBACK before onCommands resolved, reports
 * answered by a fake consumer, a results timeout).
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import mqtt from 'mqtt'
import {
  decodeReportsRequest, encodeCommandsMessage, encodeReportsResponse, gatewayCommandsTopic, gatewayReportResultsTopic, gatewayReportsTopic,
  type CommandsMessage, type ReportsRequest, type WireCommand
} from '../../protocol/commands.ts'
import { parseGatewayConfig } from '../../gateway/config.ts'
import { HttpCommandLink, type HttpLinkConfig } from '../../gateway/commands/link-http.ts'
import { MqttCommandLink, type MqttLinkConfig } from '../../gateway/commands/link-mqtt.ts'
import { createCommandLink } from '../../gateway/commands/links.ts'
import { silentLogger } from '../helpers/gateway.ts'
import { waitFor } from '../helpers/index.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

const TOKEN = 'cmd-link-test-token-0123456789'
const GW = 'gw-cmd'

const cmd = (id: string, n: number): WireCommand => ({ id, device: 'dev-1', n, name: 'reboot', args: { n }, createdAt: 1_700_000_000_000, expiresAt: 1_900_000_000_000 })
const msgOf = (...ids: string[]): Buffer => encodeCommandsMessage({ commands: ids.map((id, i) => cmd(id, i + 1)), recalls: [] })
const ids = (m: CommandsMessage): string => m.commands.map((c) => c.id).join(',')
const reportsReq = (batch: string): ReportsRequest => ({
  v: 1,
  gateway: GW,
  batch,
  reports: [['c1', 'dev-1', 'at-gateway', 1_700_000_000_100], ['c2', 'dev-1', 'completed', 1_700_000_000_200, { ok: 1 }]],
  presence: [['dev-1', 1, 1_700_000_000_000]]
})
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

type Poll = { req: http.IncomingMessage, res: http.ServerResponse, wait: string | null }

/** A fake ingest: each request goes to the test's handler; counts polls and reports. */
async function fakeIngest (t: TestContext, handle: { poll?: (p: Poll, n: number) => void, reports?: (body: Buffer, res: http.ServerResponse) => void }): Promise<{ url: string, polls: () => number, reports: () => number, auth: string[] }> {
  let polls = 0
  let reports = 0
  const auth: string[] = []
  const srv = http.createServer((req, res) => {
    auth.push(String(req.headers.authorization))
    const u = new URL(req.url ?? '/', 'http://x')
    if (req.method === 'GET' && u.pathname === '/v1/gateway/commands') {
      polls++
      if (handle.poll) handle.poll({ req, res, wait: u.searchParams.get('wait') }, polls)
      else { res.writeHead(404); res.end() }
      return
    }
    if (req.method === 'POST' && u.pathname === '/v1/gateway/command-reports') {
      reports++
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        if (handle.reports) handle.reports(Buffer.concat(chunks), res)
        else { res.writeHead(404); res.end() }
      })
      return
    }
    res.writeHead(404)
    res.end()
  })
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => { srv.closeAllConnections(); srv.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, polls: () => polls, reports: () => reports, auth }
}

const cbor = (res: http.ServerResponse, body: Buffer): void => { res.writeHead(200, { 'content-type': 'application/cbor' }); res.end(body) }
/** A long poll with nothing to hand: answered empty after a short while. */
const idle = (p: Poll): void => { setTimeout(() => { if (!p.res.writableEnded) cbor(p.res, encodeCommandsMessage({ commands: [], recalls: [] })) }, 50) }

/** A port nothing listens on. */
async function deadUrl (): Promise<string> {
  const srv = http.createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as AddressInfo).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return `http://127.0.0.1:${port}`
}

function httpLink (t: TestContext, urls: string[], over: Partial<HttpLinkConfig> = {}): HttpCommandLink {
  const link = new HttpCommandLink({ urls, token: TOKEN, pollWaitMs: 1000, requestTimeoutMs: 2000, retryBaseMs: 20, retryMaxMs: 100, authRetryMs: 60_000, apiRetryMs: 60_000, ...over }, silentLogger)
  t.after(() => link.close())
  return link
}

test('http link: createCommandLink picks nothing without an upstream, HTTP for http URLs, MQTT for mqtt URLs', async (t) => {
  assert.equal(createCommandLink(parseGatewayConfig({ argv: [], env: {} }), silentLogger), null)
  const h = createCommandLink(parseGatewayConfig({ argv: ['--upstream', 'http://127.0.0.1:1', '--token', TOKEN], env: {} }), silentLogger)
  t.after(() => h?.close())
  assert.ok(h instanceof HttpCommandLink)
  assert.equal(h.status().state, 'idle')
  const m = createCommandLink(parseGatewayConfig({ argv: ['--upstream', 'mqtt://127.0.0.1:1', '--token', TOKEN], env: {} }), silentLogger)
  t.after(() => m?.close())
  assert.ok(m instanceof MqttCommandLink)
  assert.equal(m.status().state, 'idle')
})

test('http link: commands are handed one message at a time, in order; the next poll goes only after onCommands resolved', async (t) => {
  const events: string[] = []
  const ingest = await fakeIngest(t, {
    poll: (p, n) => {
      events.push(`poll ${n} wait=${p.wait}`)
      assert.equal(p.req.headers.accept, 'application/cbor')
      if (n === 1) cbor(p.res, msgOf('a1', 'a2'))
      else if (n === 2) cbor(p.res, msgOf('b1'))
      else idle(p)
    }
  })
  const link = httpLink(t, [ingest.url], { pollWaitMs: 1234 })
  link.start(async (m) => {
    events.push(`handle ${ids(m)}`)
    await sleep(200)
    events.push(`stored ${ids(m)}`)
  })
  await waitFor(() => ingest.polls() >= 3, { what: 'a third poll' })
  assert.deepEqual(events.slice(0, 7), ['poll 1 wait=1234', 'handle a1,a2', 'stored a1,a2', 'poll 2 wait=1234', 'handle b1', 'stored b1', 'poll 3 wait=1234'])
  assert.equal(ingest.auth[0], `Bearer ${TOKEN}`)
  assert.equal(link.delivered, 2)
  assert.equal(link.status().state, 'ok')
  assert.ok(link.status().lastOkAt !== null)
})

test('http link: a rejected onCommands gets the same commands again on the next poll', async (t) => {
  let offered = 0
  const ingest = await fakeIngest(t, {
    // the ingest offers c1 until it is stored (here: offered twice)
    poll: (p) => { if (offered < 2) { offered++; cbor(p.res, msgOf('c1')) } else idle(p) }
  })
  const link = httpLink(t, [ingest.url])
  const handed: string[] = []
  link.start(async (m) => {
    handed.push(ids(m))
    if (handed.length === 1) throw new Error('disk full')
  })
  await waitFor(() => ingest.polls() >= 3, { what: 'the poll after the second offer' })
  assert.deepEqual(handed, ['c1', 'c1'])
  assert.equal(link.delivered, 1)
})

test('http link: 401 -> auth-failed and no fast retry; 404 -> the ingest has no command API, no spinning', async (t) => {
  const ingest = await fakeIngest(t, { poll: (p) => { p.res.writeHead(401, { 'content-type': 'application/json' }); p.res.end(JSON.stringify({ error: 'unauthorized', message: 'unknown token' })) } })
  const link = httpLink(t, [ingest.url])
  link.start(async () => { throw new Error('not called') })
  await waitFor(() => link.status().state === 'auth-failed', { what: 'auth-failed' })
  assert.match(link.status().lastError ?? '', /refused our credentials \(401: unauthorized: unknown token\)/)

  const noApi = await fakeIngest(t, {}) // 404 on every path
  const old = httpLink(t, [noApi.url])
  old.start(async () => { throw new Error('not called') })
  await waitFor(() => /no command API/.test(old.status().lastError ?? ''), { what: 'no command API state' })
  assert.equal(old.status().state, 'failing')
  // both back-off slowly (--auth-retry-ms, --command-api-retry-ms: a minute here): still one poll each
  await sleep(500)
  assert.equal(ingest.polls(), 1)
  assert.equal(noApi.polls(), 1)
  // close ends the slow sleep at once
  await old.close()
  await link.close()
})

test('http link: reports round trip, refused with Retry-After, no answer when nothing listens', async (t) => {
  let seen: ReportsRequest | null = null
  const ingest = await fakeIngest(t, {
    poll: idle,
    reports: (body, res) => {
      const r = decodeReportsRequest(body, { maxReports: 100 })
      if (r.batch === 'busy') {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '7' })
        res.end(JSON.stringify({ error: 'busy', message: 'try later' }))
        return
      }
      seen = r
      cbor(res, encodeReportsResponse({ batch: r.batch, results: [[0, 0], [1, 3, 'unknown command']] }))
    }
  })
  const link = httpLink(t, [ingest.url])
  const ok = await link.sendReports(reportsReq('b-1'))
  assert.deepEqual(ok, { kind: 'results', results: [[0, 0], [1, 3, 'unknown command']] })
  assert.deepEqual(seen, reportsReq('b-1'))
  const busy = await link.sendReports(reportsReq('busy'))
  assert.deepEqual(busy, { kind: 'refused', status: 503, message: 'busy: try later', retryAfterMs: 7000 })

  const dead = httpLink(t, [await deadUrl()])
  const none = await dead.sendReports(reportsReq('b-2'))
  assert.equal(none.kind, 'none')
  assert.match((none as { error: string }).error, /ECONNREFUSED/)
})

test('http link: polls and reports fail over to the second --upstream URL', async (t) => {
  const ingest = await fakeIngest(t, {
    poll: (p, n) => { if (n === 1) cbor(p.res, msgOf('f1')); else idle(p) },
    reports: (body, res) => { const r = decodeReportsRequest(body, { maxReports: 100 }); cbor(res, encodeReportsResponse({ batch: r.batch, results: [[0, 0], [1, 0]] })) }
  })
  const link = httpLink(t, [await deadUrl(), ingest.url])
  const handed: string[] = []
  link.start(async (m) => { handed.push(ids(m)) })
  await waitFor(() => handed.length === 1, { what: 'commands through the second URL' })
  assert.deepEqual(handed, ['f1'])
  assert.equal(link.status().url, `${ingest.url}/`)
  const a = await link.sendReports(reportsReq('b-3'))
  assert.equal(a.kind, 'results')
})

test('http link: close() aborts the poll the ingest is holding', async (t) => {
  let aborted = false
  const ingest = await fakeIngest(t, { poll: (p) => { p.res.on('close', () => { aborted = !p.res.writableEnded }) } })
  const link = httpLink(t, [ingest.url], { pollWaitMs: 30_000 })
  link.start(async () => {})
  await waitFor(() => ingest.polls() === 1, { what: 'a held poll' })
  await link.close()
  await waitFor(() => aborted, { what: 'the poll\'s connection closed by the link' })
  assert.equal(ingest.polls(), 1)
})

// ---- MQTT ------------------------------------------------------------------------------

function mqttLink (t: TestContext, url: string, over: Partial<MqttLinkConfig> = {}): MqttCommandLink {
  const link = new MqttCommandLink({ urls: [url], gatewayId: GW, clientId: `gw-${GW}-cmd`, username: GW, password: '', alpn: [], protocolVersion: 5, reconnectMs: 100, connectTimeoutMs: 5000, resultsTimeoutMs: 2000, ...over }, silentLogger)
  t.after(() => link.close())
  return link
}

async function testClient (t: TestContext, url: string, id: string): Promise<mqtt.MqttClient> {
  const c = await mqtt.connectAsync(url, { clientId: id, protocolVersion: 5, reconnectPeriod: 0 })
  t.after(() => c.endAsync(true))
  return c
}

for (const version of [5, 4] as const) {
  test(`mqtt link (MQTT ${version === 5 ? '5' : '3.1.1'}): commands published while the link is away wait in its session; no PUBACK before onCommands resolved`, async (t) => {
    needTools('mosquitto')
    const broker = await startMosquitto(t)
    const clientId = `gw-${GW}-cmd-v${version}`
    const pub = await testClient(t, broker.url, `ingest-${version}`)

    // first run: makes the session and its subscriptions, then goes away
    const first = mqttLink(t, broker.url, { clientId, protocolVersion: version })
    first.start(async () => {})
    await waitFor(() => first.status().state === 'ok', { what: 'first run subscribed' })
    await first.close()

    // published while the link is closed: waits at the broker
    await pub.publishAsync(gatewayCommandsTopic(GW), msgOf('m1'), { qos: 1 })

    // second run: gets it, never resolves; killed before it stored them
    const second = mqttLink(t, broker.url, { clientId, protocolVersion: version })
    const handed2: string[] = []
    second.start(async (m) => { handed2.push(ids(m)); await new Promise(() => {}) })
    await waitFor(() => handed2.length === 1, { what: 'second run handed m1' })
    assert.deepEqual(handed2, ['m1'])
    await second.close()
    assert.equal(second.counters.delivered, 0)

    // third run: the broker sends m1 again (no PUBACK went); this time it is stored
    const third = mqttLink(t, broker.url, { clientId, protocolVersion: version })
    const handed3: string[] = []
    third.start(async (m) => { handed3.push(ids(m)) })
    await waitFor(() => third.counters.delivered === 1, { what: 'third run stored m1' })
    assert.deepEqual(handed3, ['m1'])
    await third.close()

    // fourth run: m1 was acknowledged; the first thing it gets is the marker published after
    await pub.publishAsync(gatewayCommandsTopic(GW), msgOf('m2'), { qos: 1 })
    const fourth = mqttLink(t, broker.url, { clientId, protocolVersion: version })
    const handed4: string[] = []
    fourth.start(async (m) => { handed4.push(ids(m)) })
    await waitFor(() => fourth.counters.delivered === 1, { what: 'fourth run stored m2' })
    assert.deepEqual(handed4, ['m2'])
  })
}

test('mqtt link: one message at a time in order; a rejected onCommands is not acknowledged and comes again after a reconnect', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const pub = await testClient(t, broker.url, 'ingest-order')
  const link = mqttLink(t, broker.url, { clientId: 'gw-order-cmd' })
  const events: string[] = []
  let failNext = true
  link.start(async (m) => {
    events.push(`handle ${ids(m)}`)
    await sleep(100)
    if (ids(m) === 'o2' && failNext) { failNext = false; events.push('reject o2'); throw new Error('disk full') }
    events.push(`stored ${ids(m)}`)
  })
  await waitFor(() => link.status().state === 'ok', { what: 'link subscribed' })
  for (const id of ['o1', 'o2', 'o3']) await pub.publishAsync(gatewayCommandsTopic(GW), msgOf(id), { qos: 1 })
  await waitFor(() => events.includes('stored o3'), { what: 'o3 stored' })
  // o2 refused: not acknowledged, the connection dropped before o3 was handled; both came again in order
  assert.deepEqual(events, ['handle o1', 'stored o1', 'handle o2', 'reject o2', 'handle o2', 'stored o2', 'handle o3', 'stored o3'])
  assert.equal(link.counters.refused, 1)
  assert.equal(link.counters.delivered, 3)
})

test('mqtt link: reports answered by a consumer on the results topic; unknown batches ignored; no answer -> none; nobody subscribed -> refused', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const link = mqttLink(t, broker.url, { clientId: 'gw-reports-cmd', resultsTimeoutMs: 300 })
  link.start(async () => {})
  await waitFor(() => link.status().state === 'ok', { what: 'link subscribed' })

  // nobody subscribed to the reports topic: the PUBACK says so (MQTT 5 0x10), refused at once
  const unrouted = await link.sendReports(reportsReq('r-0'))
  assert.equal(unrouted.kind, 'refused')
  assert.equal((unrouted as { status: number }).status, 503)

  const consumer = await testClient(t, broker.url, 'ingest-consumer')
  let answer = true
  const got: ReportsRequest[] = []
  consumer.on('message', (_topic, payload) => {
    const r = decodeReportsRequest(payload, { maxReports: 100 })
    got.push(r)
    if (!answer) return
    // first a results message for a batch nobody waits for, then the real one
    consumer.publish(gatewayReportResultsTopic(GW), encodeReportsResponse({ batch: 'nobody', results: [[0, 0]] }), { qos: 1 })
    consumer.publish(gatewayReportResultsTopic(GW), encodeReportsResponse({ batch: r.batch, results: [[0, 0], [1, 2, 'busy']] }), { qos: 1 })
  })
  await consumer.subscribeAsync(gatewayReportsTopic(GW), { qos: 1 })

  const a = await link.sendReports(reportsReq('r-1'))
  assert.deepEqual(a, { kind: 'results', results: [[0, 0], [1, 2, 'busy']] })
  assert.deepEqual(got[0], reportsReq('r-1'))
  assert.equal(link.counters.unknownResults, 1)

  answer = false
  const t0 = Date.now()
  const none = await link.sendReports(reportsReq('r-2'))
  assert.equal(none.kind, 'none')
  assert.match((none as { error: string }).error, /no results for reports batch r-2 within 300 ms/)
  assert.ok(Date.now() - t0 >= 290)
  assert.equal(got.length, 2)
})
