/**
 * The whole path with client certificates everywhere: devices over MQTT/TLS with
 * one certificate each (CN = device id) to a gateway with `--tls-require-client-cert` and
 * `--no-mqtt`, the gateway over HTTPS with mTLS (CN = gateway id) and `--token-file` to an
 * ingest with `--tls-require-client-cert`, and the audit over HTTPS with a read token:
 * every acknowledged reading stored exactly once.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { createSimulation, runAudit, simConfig, waitForDrain } from '../../device-sim/index.ts'
import { makeCa, makeCert } from '../helpers/certs.ts'
import { bearer, call } from '../helpers/http.ts'
import { spawnCli, tempDir } from '../helpers/index.ts'

const READ = 'e2e-tls-read-token-0123'

test('e2e over TLS with client certificates: devices -> gateway -> ingest, exactly once', async (t) => {
  const dir = await tempDir(t, 'e2e-tls-')
  const ca = await makeCa(dir, 'ca')
  const ids = Array.from({ length: 5 }, (_, i) => `tls-${String(i).padStart(4, '0')}`)
  const [ingestCert, gatewayCert, gw1Client, auditor] = await Promise.all([makeCert(ca, 'ingest'), makeCert(ca, 'gateway'), makeCert(ca, 'gw1', { file: 'gw1-client' }), makeCert(ca, 'auditor')])
  await Promise.all(ids.map((id) => makeCert(ca, id)))
  await writeFile(join(dir, 'tokens.json'), JSON.stringify({ gw1: { secret: 'e2e-tls-gw1-token' } }))
  await writeFile(join(dir, 'gw1.token'), 'e2e-tls-gw1-token\n', { mode: 0o600 })

  const ingest = await spawnCli(t, 'ingest/main.ts', ['--port', '0', '--data-dir', join(dir, 'ingest'), '--tokens-file', join(dir, 'tokens.json'),
    '--tls-cert', ingestCert.certPath, '--tls-key', ingestCert.keyPath, '--tls-ca', ca.certPath, '--tls-require-client-cert', '--read-token', `*:${READ}`])
  assert.equal(ingest.ready.scheme, 'https')
  const ingestUrl = `https://127.0.0.1:${ingest.ready.port as number}`
  const gw = await spawnCli(t, 'gateway/main.ts', ['--gateway-id', 'gw1', '--data-dir', join(dir, 'gateway'), '--host', '127.0.0.1', '--no-mqtt', '--admin-port', '0',
    '--tls-port', '0', '--tls-cert', gatewayCert.certPath, '--tls-key', gatewayCert.keyPath, '--tls-ca', ca.certPath, '--tls-require-client-cert',
    '--upstream', ingestUrl, '--upstream-ca', ca.certPath, '--upstream-cert', gw1Client.certPath, '--upstream-key', gw1Client.keyPath, '--token-file', join(dir, 'gw1.token'),
    '--linger-ms', '100'])
  assert.equal(gw.ready.mqttPort, null, 'plain listener off')

  const sim = createSimulation(simConfig({
    broker: `mqtts://127.0.0.1:${gw.ready.tlsPort as number}`, ca: ca.certPath, cert: join(dir, '{id}.pem'), key: join(dir, '{id}.key'),
    devices: ids.length, idPrefix: 'tls-', rate: 20, count: 40, progress: 'off', stopGraceMs: 30_000 // a loaded box: wait for every PUBACK
  }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(15_000)
  await sim.done
  await sim.stop()
  assert.equal(sim.stats.counters.acked, 200)

  // the audit reads the ingest over HTTPS (private CA; the ingest wants a client certificate
  // on every connection) with a read token
  const httpsFetch: typeof fetch = async (input) => {
    const a = await call(String(input), { headers: bearer(READ), tls: { ca: ca.cert, cert: auditor.cert, key: auditor.key } })
    return new Response(new Uint8Array(a.body), { status: a.status, headers: { 'content-type': 'application/json' } })
  }
  const drain = await waitForDrain({ ingestUrl, gatewayAdmin: `http://127.0.0.1:${gw.ready.adminPort as number}`, timeoutMs: 20_000, fetch: httpsFetch, onProgress: (p) => { if (process.env.TEST_VERBOSE) console.error(JSON.stringify(p)) } })
  assert.equal(drain.settled, true, 'gateway drained')
  const audit = await runAudit(sim.records(), { ingestUrl, fetch: httpsFetch })
  assert.equal(audit.ok, true, JSON.stringify(audit.failures.slice(0, 2)))
  assert.equal(audit.totals.acknowledged, 200)
  assert.equal(audit.totals.stored, 200)
  assert.equal(audit.totals.lost + audit.totals.duplicated, 0)
  // without the read token the query is refused
  assert.equal((await call(`${ingestUrl}/v1/stats`, { tls: { ca: ca.cert, cert: gw1Client.cert, key: gw1Client.key } })).status, 401)
})
