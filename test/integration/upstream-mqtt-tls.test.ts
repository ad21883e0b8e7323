/**
 * The MQTT upstream over mTLS against Mosquitto with `require_certificate true` and the ACL
 * of docs/upstream-mqtt.md (issue 20): the certificate's CN is the user name, each gateway
 * may publish only to its own batch topics and read only its own results.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { createIngest } from '../../ingest/index.ts'
import { makeCa, makeCert } from '../helpers/certs.ts'
import { connectDevice, publish, reading, silentLogger, startGateway } from '../helpers/gateway.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

/** The ACL of docs/upstream-mqtt.md, verbatim. */
const ACL = `# every gateway: its own batches out, its own results in
pattern write gateways/%u/batches/+
pattern read gateways/%u/results
# the ingest: every gateway's batches in, every gateway's results out
user ingest
topic read gateways/+/batches/+
topic write gateways/+/results
`

test('mqtts with client certificates and the documented ACL: two-phase upload works; a wrong certificate or another gateway\'s topic gets nothing deleted', { timeout: 60_000 }, async (t) => {
  needTools('mosquitto')
  const dir = await tempDir(t, 'mqtt-tls-')
  const ca = await makeCa(dir, 'ca')
  const other = await makeCa(await tempDir(t, 'mqtt-tls-other-'), 'other-ca')
  const [server, gwCert, ingestCert, rogue] = await Promise.all([makeCert(ca, 'localhost', { file: 'server' }), makeCert(ca, 'gw-tls'), makeCert(ca, 'ingest'), makeCert(other, 'gw-tls', { file: 'rogue' })])
  await writeFile(join(dir, 'acl'), ACL)
  const broker = await startMosquitto(t, {
    dir,
    tlsListener: [`cafile ${ca.certPath}`, `certfile ${server.certPath}`, `keyfile ${server.keyPath}`, 'require_certificate true', 'use_identity_as_username true'],
    extra: [`acl_file ${join(dir, 'acl')}`]
  })
  const url = `mqtts://localhost:${broker.port}`
  const ingest = await createIngest({ port: 0, dataDir: join(dir, 'ingest'), mqttBroker: url, mqttClientId: 'ingest-tls', mqttCa: ca.certPath, mqttCert: ingestCert.certPath, mqttKey: ingestCert.keyPath }, { logger: silentLogger })
  t.after(() => ingest.close())
  await waitFor(() => ingest.mqtt?.ready, { what: 'ingest subscribed over mTLS' })

  const tls = { upstreamCa: ca.certPath, upstreamCert: gwCert.certPath, upstreamKey: gwCert.keyPath }
  const gw = await startGateway(t, { lingerMs: 50, retryBaseMs: 20, retryMaxMs: 200, upstream: [url], gatewayId: 'gw-tls', ...tls })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed over mTLS' })
  const c = await connectDevice(t, gw.mqttPort, 'tls-dev-1')
  for (let i = 1; i <= 10; i++) await publish(c, 'devices/tls-dev-1/readings', reading(i))
  await waitFor(() => gw.store.items === 0, { what: 'answered through the ACL' })
  assert.equal((await ingest.sink.stats()).stored, 10)

  // a certificate from another CA: the TLS handshake fails, nothing is sent or deleted
  const bad = await startGateway(t, { lingerMs: 50, retryBaseMs: 20, retryMaxMs: 200, upstream: [url], gatewayId: 'gw-tls', upstreamClientId: 'gw-rogue', ...tls, upstreamCert: rogue.certPath, upstreamKey: rogue.keyPath })
  const c2 = await connectDevice(t, bad.mqttPort, 'tls-dev-2')
  for (let i = 1; i <= 3; i++) await publish(c2, 'devices/tls-dev-2/readings', reading(i))
  await waitFor(() => bad.flusher.status().lastError !== null, { what: 'the rogue gateway failed' })
  assert.equal(bad.flusher.status().mqtt?.connected, false)
  assert.equal(bad.store.items, 3, 'nothing deleted')

  // a good certificate (CN gw-tls) claiming another gateway's topics: the ACL refuses its
  // PUBLISH, flushing pauses as after a refused token, and nothing is deleted
  const liar = await startGateway(t, { lingerMs: 50, retryBaseMs: 20, retryMaxMs: 200, upstream: [url], gatewayId: 'gw-other', upstreamClientId: 'gw-liar', ...tls })
  const c3 = await connectDevice(t, liar.mqttPort, 'tls-dev-3')
  for (let i = 1; i <= 3; i++) await publish(c3, 'devices/tls-dev-3/readings', reading(i))
  await waitFor(() => liar.flusher.status().mqtt?.connected, { what: 'the liar connected' })
  // Mosquitto grants the subscription and filters at delivery; the PUBLISH is refused (0x87: 403)
  // (a send before the SUBACK fails first as unreachable: wait for the refusal itself)
  await waitFor(() => liar.flusher.status().state === 'auth-failed', { what: 'the liar refused' })
  assert.match(liar.flusher.status().lastError ?? '', /Not authorized \(reason code 135\)/)
  assert.equal(liar.store.items, 3, 'nothing deleted')
  assert.equal((await ingest.sink.stats()).stored, 10, 'nothing of the liar stored')
})
