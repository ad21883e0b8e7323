/**
 * DNS rebinding against the token-less, loopback-bound admin server: a
 * page on `rebind.example:PORT` whose name now resolves to 127.0.0.1 sends Host and Origin
 * `rebind.example:PORT`, equal to each other. It must neither read (GET /dlq/export) nor
 * purge (POST /dlq/purge) the dead letters; the real page (Host 127.0.0.1:PORT) still can.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { test } from 'node:test'
import { connectDevice, publish, startGateway } from '../helpers/gateway.ts'
import { waitFor } from '../helpers/index.ts'

type Answer = { status: number, body: string }

/** node:http, because fetch will not send a Host header of our choosing. */
function send (port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  // host '' = send no Host header at all (HTTP/1.0 style)
  const setHost = headers.host !== ''
  if (!setHost) delete headers.host
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, setHost, headers: { ...headers, ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }) } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

test('admin without a token: a rebound Host or foreign Origin cannot read or purge the DLQ; loopback Hosts can', async (t) => {
  const gw = await startGateway(t)
  const port = gw.adminPort
  const dev = await connectDevice(t, gw.mqttPort, 'junk-1')
  await publish(dev, 'devices/junk-1/readings', '{"values":{}}')
  const own = { host: `127.0.0.1:${port}` }
  const count = async (): Promise<number> => (JSON.parse((await send(port, 'GET', '/status', own)).body) as { dlq: { items: number } }).dlq.items
  await waitFor(async () => await count() === 1, { what: 'one dead letter' })

  const rebind = { host: `rebind.example:${port}`, origin: `http://rebind.example:${port}` }
  const purge = JSON.stringify({ device: 'junk-*' })
  const refusedPurge = await send(port, 'POST', '/dlq/purge', { ...rebind, 'content-type': 'application/json' }, purge)
  assert.equal(refusedPurge.status, 421, refusedPurge.body)
  assert.match(refusedPurge.body, /DNS rebinding.*"field":"host"/)
  const refusedExport = await send(port, 'GET', '/dlq/export', { ...rebind })
  assert.equal(refusedExport.status, 421)
  assert.doesNotMatch(refusedExport.body, /junk-1/)
  for (const host of [`localhost.evil:${port}`, `127.0.0.1.evil.com:${port}`, `foo.localhost:${port}`, '127.0.0.1', `127.0.0.1:${port + 1}`]) {
    assert.equal((await send(port, 'GET', '/status', { host })).status, 421, `Host ${JSON.stringify(host)}`)
  }
  assert.notEqual((await send(port, 'GET', '/status', { host: '' })).status, 200, 'no Host header (node answers 400 itself)')
  // right Host, foreign Origin (a page elsewhere, or a rebound page that forged nothing): refused
  for (const origin of ['http://rebind.example', `http://rebind.example:${port}`, `https://127.0.0.1:${port}`, 'null', `http://localhost:${port + 1}`]) {
    const r = await send(port, 'POST', '/dlq/purge', { ...own, origin, 'content-type': 'application/json' }, purge)
    assert.equal(r.status, 403, origin)
  }
  assert.equal(await count(), 1, 'nothing was purged')

  // the probes answer any Host (they reveal nothing)
  assert.equal((await send(port, 'GET', '/healthz', { host: 'rebind.example' })).status, 200)

  // the real page: every loopback spelling of this server, with its own Origin
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `LOCALHOST:${port}`]) {
    const r = await send(port, 'GET', '/dlq/export', { host })
    assert.equal(r.status, 200, host)
    assert.match(r.body, /junk-1/)
  }
  const ok = await send(port, 'POST', '/dlq/purge', { ...own, origin: `http://127.0.0.1:${port}`, 'content-type': 'application/json' }, purge)
  assert.equal(ok.status, 200, ok.body)
  assert.equal((JSON.parse(ok.body) as { purged: number }).purged, 1)
  assert.equal(await count(), 0)
})

test('admin with a token: any Host is fine once the token is given (today\'s rule)', async (t) => {
  const token = 'admin-token-0123456789abcdef'
  const gw = await startGateway(t, { adminToken: token })
  const port = gw.adminPort
  const auth = { authorization: `Bearer ${token}` }
  assert.equal((await send(port, 'GET', '/status', { host: `gateway.lan:${port}`, ...auth })).status, 200)
  assert.equal((await send(port, 'GET', '/status', { host: `gateway.lan:${port}` })).status, 401)
  const r = await send(port, 'POST', '/dlq/purge', { host: `gateway.lan:${port}`, origin: `http://gateway.lan:${port}`, 'content-type': 'application/json', ...auth }, '{"device":"x"}')
  assert.equal(r.status, 200, r.body)
})
