/**
 * MQTT over TLS (docs/security-tls.md): real handshakes with a CA made at run time;
 * a client certificate's CN is the device id (client id must match, a cert for `a` cannot
 * publish as `b`); certificates from another CA, expired ones, or none are refused when
 * required; the packet guard applies to TLS clients; SIGHUP swaps the server certificate;
 * `--no-mqtt` leaves only the TLS listener.
 */
import assert from 'node:assert/strict'
import { copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { connect as tlsConnect, type PeerCertificate } from 'node:tls'
import mqtt from 'mqtt'
import { makeCa, makeCert, type Ca, type Pem } from '../helpers/certs.ts'
import { publish, reading, startGateway } from '../helpers/gateway.ts'
import { spawnCli, tempDir, waitFor } from '../helpers/index.ts'

type Pki = { ca: Ca, server: Pem, a: Pem, b: Pem, expiredA: Pem, rogueA: Pem }

async function pki (t: Parameters<typeof tempDir>[0]): Promise<Pki> {
  const dir = await tempDir(t, 'gw-tls-')
  const ca = await makeCa(dir, 'ca')
  const rogue = await makeCa(await tempDir(t, 'gw-tls-rogue-'), 'rogue-ca')
  const [server, a, b, expiredA, rogueA] = await Promise.all([
    makeCert(ca, 'gateway'), makeCert(ca, 'a'), makeCert(ca, 'b'), makeCert(ca, 'a', { expired: true, file: 'a-expired' }), makeCert(rogue, 'a')
  ])
  return { ca, server, a, b, expiredA, rogueA }
}

function connectTls (port: number, ca: string, opts: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtts://127.0.0.1:${port}`, { ca, reconnectPeriod: 0, connectTimeout: 5000, ...opts })
    c.once('connect', () => resolve(c))
    c.once('error', (err) => { c.end(true); reject(err) })
    c.once('close', () => reject(new Error('connection closed before CONNACK')))
  })
}

test('tls: a device certificate authenticates its CN; wrong CA, expired, missing or mismatched certificates are refused', async (t) => {
  const k = await pki(t)
  const gw = await startGateway(t, { tlsPort: 0, tlsCert: k.server.certPath, tlsKey: k.server.keyPath, tlsCa: k.ca.certPath, tlsRequireClientCert: true })
  const port = gw.tlsPort!
  assert.ok(port > 0)

  const a = await connectTls(port, k.ca.cert, { clientId: 'a', cert: k.a.cert, key: k.a.key })
  t.after(() => a.end(true))
  await publish(a, 'devices/a/readings', reading(1))
  assert.equal(gw.store.items, 1, 'reading over TLS stored')
  // the CN makes the client a device: it may subscribe only to its own receipts
  await assert.rejects(a.subscribeAsync('devices/b/receipts', { qos: 1 }), /subscri|128|Unspecified|refused/i)

  // a certificate for `a` cannot connect as `b` ...
  await assert.rejects(connectTls(port, k.ca.cert, { clientId: 'b', cert: k.a.cert, key: k.a.key }), /Not authorized|closed/i)
  // ... nor publish to b's readings while connected as a (the connection is closed)
  await assert.rejects(publish(a, 'devices/b/readings', reading(2)), /closed/)
  assert.equal(gw.store.items, 1)

  // handshake failures: another CA's certificate, an expired one, none
  await assert.rejects(connectTls(port, k.ca.cert, { clientId: 'a', cert: k.rogueA.cert, key: k.rogueA.key }), /alert|unknown ca|certificate|closed|ECONNRESET|socket/i)
  await assert.rejects(connectTls(port, k.ca.cert, { clientId: 'a', cert: k.expiredA.cert, key: k.expiredA.key }), /alert|expired|certificate|closed|ECONNRESET|socket/i)
  await assert.rejects(connectTls(port, k.ca.cert, { clientId: 'a' }), /alert|certificate|closed|ECONNRESET|socket/i)
  // the client side: a server certificate from a CA it does not trust
  await assert.rejects(connectTls(port, (await makeCa(await tempDir(t), 'other')).cert, { clientId: 'b', cert: k.b.cert, key: k.b.key }), /self-signed|unable to verify|certificate/i)
  const failures = async (): Promise<number> => (await gw.metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'gateway_tls_handshake_failures_total')!.values.reduce((n, v) => n + v.value, 0)
  await waitFor(async () => await failures() >= 3, { timeoutMs: 5000, what: 'the three refused handshakes counted' })

  const b = await connectTls(port, k.ca.cert, { clientId: 'b', cert: k.b.cert, key: k.b.key })
  t.after(() => b.end(true))
  await publish(b, 'devices/b/readings', reading(1))
  assert.equal(gw.store.items, 2)
})

test('tls: the packet size guard closes an oversize TLS client; the plain listener can be turned off', async (t) => {
  const k = await pki(t)
  const gw = await startGateway(t, { mqtt: false, tlsPort: 0, tlsCert: k.server.certPath, tlsKey: k.server.keyPath, maxPacketBytes: 1024 })
  assert.throws(() => gw.mqttPort, /--no-mqtt/)
  const s = tlsConnect({ host: '127.0.0.1', port: gw.tlsPort!, ca: k.ca.cert, servername: 'localhost' })
  t.after(() => s.destroy())
  await new Promise<void>((resolve, reject) => { s.once('secureConnect', resolve); s.once('error', reject) })
  let closed = false
  s.on('close', () => { closed = true })
  s.on('error', () => {})
  // PUBLISH declaring 1 MiB: cut off on the header, before any body byte is buffered
  s.write(Buffer.from([0x30, 0x80, 0x80, 0x40]))
  await waitFor(() => closed, { timeoutMs: 5000, what: 'oversize TLS connection closed' })
  assert.match(await gw.metrics.registry.getSingleMetricAsString('gateway_oversize_packets_total'), /gateway_oversize_packets_total 1/)
  assert.equal(gw.readiness().ready, true, gw.readiness().reasons.join())
})

test('tls: SIGHUP reloads the server certificate without a restart', async (t) => {
  const k = await pki(t)
  const dir = await tempDir(t)
  const certPath = join(dir, 'server.pem')
  const keyPath = join(dir, 'server.key')
  await copyFile(k.server.certPath, certPath)
  await copyFile(k.server.keyPath, keyPath)
  const gw = await spawnCli(t, 'gateway/main.ts', ['--data-dir', join(dir, 'data'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--tls-port', '0', '--tls-cert', certPath, '--tls-key', keyPath])
  const port = gw.ready.tlsPort as number
  assert.equal(typeof port, 'number')
  assert.equal(typeof gw.ready.mqttPort, 'number')
  const peer = async (): Promise<PeerCertificate> => await new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca: k.ca.cert, servername: 'localhost' }, () => { resolve(s.getPeerCertificate()); s.destroy() })
    s.once('error', reject)
  })
  const before = await peer()
  assert.equal(before.subject.CN, 'gateway')
  const next = await makeCert(k.ca, 'gateway-2')
  await copyFile(next.keyPath, keyPath)
  await copyFile(next.certPath, certPath)
  gw.proc.kill('SIGHUP')
  await waitFor(() => gw.lines.some((l) => l.msg === 'TLS certificate reloaded'), { timeoutMs: 5000, what: 'reload logged' })
  const after = await peer()
  assert.equal(after.subject.CN, 'gateway-2')
  assert.notEqual(after.serialNumber, before.serialNumber)
  assert.equal(gw.proc.exitCode, null, 'still running')
})
