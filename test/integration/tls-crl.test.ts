/**
 * `--tls-crl` (device certificates could not be revoked): a revoked device
 * certificate fails the handshake, others of the same CA and of a second CA (several CRLs
 * in one file) still connect; SIGHUP reloads the CRL with the certificates; an unreadable or
 * invalid CRL is a startup error naming the flag.
 */
import assert from 'node:assert/strict'
import { copyFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { makeCa, makeCert, type Ca, type Pem } from '../helpers/certs.ts'
import { makeCrl } from '../helpers/crl.ts'
import { runCli } from '../helpers/cli.ts'
import { publish, reading, startGateway } from '../helpers/gateway.ts'
import { spawnCli, tempDir, waitFor } from '../helpers/index.ts'

type Pki = { dir: string, ca: Ca, ca2: Ca, server: Pem, d1: Pem, d2: Pem, e1: Pem, bothCas: string }

async function pki (t: Parameters<typeof tempDir>[0]): Promise<Pki> {
  const dir = await tempDir(t, 'gw-crl-')
  const ca = await makeCa(dir, 'ca')
  const ca2 = await makeCa(await tempDir(t, 'gw-crl-2-'), 'ca2')
  const [server, d1, d2, e1] = await Promise.all([makeCert(ca, 'gateway'), makeCert(ca, 'd1'), makeCert(ca, 'd2'), makeCert(ca2, 'e1')])
  const bothCas = join(dir, 'device-cas.pem')
  await writeFile(bothCas, ca.cert + ca2.cert)
  return { dir, ca, ca2, server, d1, d2, e1, bothCas }
}

function connectTls (port: number, k: Pki, id: string, pem: Pem): Promise<mqtt.MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtts://127.0.0.1:${port}`, { ca: k.ca.cert, clientId: id, cert: pem.cert, key: pem.key, reconnectPeriod: 0, connectTimeout: 5000 })
    c.once('connect', () => resolve(c))
    c.once('error', (err) => { c.end(true); reject(err) })
    c.once('close', () => reject(new Error('connection closed before CONNACK')))
  })
}

async function connects (t: Parameters<typeof tempDir>[0], port: number, k: Pki, id: string, pem: Pem): Promise<mqtt.MqttClient> {
  const c = await connectTls(port, k, id, pem)
  t.after(() => c.end(true))
  await publish(c, `devices/${id}/readings`, reading(1))
  return c
}

const REFUSED = /alert|revoked|certificate|closed|ECONNRESET|socket/i

test('tls crl: a revoked device certificate fails the handshake; CRLs of two CAs in one file both apply', async (t) => {
  const k = await pki(t)
  // d1 revoked by ca's CRL, listed first: Node alone would read only that one and refuse every ca2 device
  const [rev, ca2Crl] = await Promise.all([makeCrl(k.ca, [k.d1], 'ca-revokes-d1'), makeCrl(k.ca2, [], 'ca2-empty')])
  const crlPath = join(k.dir, 'device-cas.crl')
  await writeFile(crlPath, rev.pem + ca2Crl.pem)
  const gw = await startGateway(t, { tlsPort: 0, tlsCert: k.server.certPath, tlsKey: k.server.keyPath, tlsCa: k.bothCas, tlsCrl: crlPath, tlsRequireClientCert: true })
  const port = gw.tlsPort!
  await assert.rejects(connectTls(port, k, 'd1', k.d1), REFUSED, 'the revoked certificate is refused')
  await connects(t, port, k, 'd2', k.d2) // same CA, not revoked
  await connects(t, port, k, 'e1', k.e1) // the second CA's CRL was read too
  assert.equal(gw.store.items, 2)
  const failures = async (): Promise<Record<string, number>> => Object.fromEntries((await gw.metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'gateway_tls_handshake_failures_total')!.values.map((v) => [v.labels.reason, v.value]))
  await waitFor(async () => (await failures()).revoked_certificate === 1, { timeoutMs: 5000, what: `the revoked handshake counted as revoked_certificate (${JSON.stringify(await failures())})` })
})

test('tls crl: SIGHUP reloads the CRL: a certificate revoked since is refused on new connections', async (t) => {
  const k = await pki(t)
  const crlPath = join(k.dir, 'live.crl')
  await copyFile((await makeCrl(k.ca, [], 'empty')).path, crlPath)
  const gw = await spawnCli(t, 'gateway/main.ts', ['--data-dir', join(k.dir, 'data'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0',
    '--tls-port', '0', '--tls-cert', k.server.certPath, '--tls-key', k.server.keyPath, '--tls-ca', k.ca.certPath, '--tls-crl', crlPath, '--tls-require-client-cert'], { readyTimeoutMs: 60_000 })
  const port = gw.ready.tlsPort as number
  const before = await connects(t, port, k, 'd1', k.d1) // not revoked yet
  await copyFile((await makeCrl(k.ca, [k.d1], 'revokes-d1')).path, crlPath)
  gw.proc.kill('SIGHUP')
  await waitFor(() => gw.lines.some((l) => l.msg === 'TLS certificate reloaded'), { timeoutMs: 5000, what: 'reload logged' })
  await assert.rejects(connectTls(port, k, 'd1', k.d1), REFUSED, 'revoked now')
  await connects(t, port, k, 'd2', k.d2)
  assert.equal(before.connected, true, 'an established connection is kept (docs/security-tls.md)')
  // a reload with a broken CRL keeps the previous one, revocation included
  await writeFile(crlPath, '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n')
  gw.proc.kill('SIGHUP')
  await waitFor(() => gw.lines.some((l) => l.msg === 'TLS reload failed; the previous certificate stays in use'), { timeoutMs: 5000, what: 'failed reload logged' })
  await assert.rejects(connectTls(port, k, 'd1', k.d1), REFUSED, 'still revoked')
  assert.equal(gw.proc.exitCode, null)
})

test('tls crl: an unreadable or invalid CRL, or one without --tls-ca, is a startup error naming --tls-crl', async (t) => {
  const k = await pki(t)
  const args = (crl: string, ca = true): string[] => ['--data-dir', join(k.dir, 'data'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--tls-port', '0',
    '--tls-cert', k.server.certPath, '--tls-key', k.server.keyPath, ...(ca ? ['--tls-ca', k.ca.certPath] : []), '--tls-crl', crl]
  const notPem = join(k.dir, 'not.crl')
  await writeFile(notPem, 'hello\n')
  const broken = join(k.dir, 'broken.crl')
  await writeFile(broken, (await makeCrl(k.ca, [], 'ok')).pem + '-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n')
  const cases: Array<[string[], RegExp]> = [
    [args(join(k.dir, 'missing.crl')), /tlsCrl: --tls-crl \S+missing\.crl: cannot read it: ENOENT/],
    [args(notPem), /tlsCrl: --tls-crl \S+not\.crl: no PEM CRL in it/],
    [args(broken), /tlsCrl: --tls-crl \S+broken\.crl: CRL 2 of 2 is not valid/],
    [args(notPem, false), /tlsCrl: --tls-crl needs --tls-ca/]
  ]
  for (const [argv, want] of cases) {
    const r = await runCli(t, 'gateway/main.ts', argv, 30_000)
    assert.equal(r.code, 2, `exit code 2 for ${want} (stderr: ${r.stderr.slice(-400)})`)
    assert.match(r.stderr, want)
  }
})
