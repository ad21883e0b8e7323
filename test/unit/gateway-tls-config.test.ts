/** TLS, upstream and secret flags of the gateway config (docs/security-tls.md). */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseGatewayConfig } from '../../gateway/config.ts'
import { tlsListenerConfig } from '../../gateway/tls.ts'
import { isLoopback as isLoopbackHost } from '../../protocol/loopback.ts'

const parse = (...argv: string[]) => parseGatewayConfig({ argv, env: {} })

test('gateway config: http:// upstream to a non-loopback host is refused unless --allow-insecure-upstream', () => {
  assert.throws(() => parse('--upstream', 'http://ingest.example.com:8080', '--token', 's-pad-0123456789'), /upstream.*in clear.*--allow-insecure-upstream/s)
  assert.throws(() => parse('--upstream', 'http://10.0.0.5:8080', '--token', 's-pad-0123456789'), /in clear/)
  assert.throws(() => parse('--upstream', 'http://127.0.0.1:8080,http://[fd00::1]:8080', '--token', 's-pad-0123456789'), /fd00::1.*in clear/)
  assert.equal(parse('--upstream', 'http://ingest.example.com:8080', '--token', 's-pad-0123456789', '--allow-insecure-upstream').allowInsecureUpstream, true)
  for (const u of ['http://127.0.0.1:8080', 'http://localhost:8080', 'http://[::1]:8080', 'https://ingest.example.com']) {
    assert.deepEqual(parse('--upstream', u, '--token', 's-pad-0123456789').upstream, [u])
  }
  assert.equal(isLoopbackHost('127.8.9.10'), true)
  assert.equal(isLoopbackHost('128.0.0.1'), false)
  assert.equal(isLoopbackHost('localhost.evil.com'), false)
})

test('gateway config: the upstream needs a token, a token file or a client certificate', () => {
  assert.throws(() => parse('--upstream', 'https://i.example.com'), /--token-file/)
  assert.equal(parse('--upstream', 'https://i.example.com', '--token-file', '/run/secrets/t').tokenFile, '/run/secrets/t')
  assert.equal(parse('--upstream', 'https://i.example.com', '--upstream-cert', 'c.pem', '--upstream-key', 'k.pem').upstreamCert, 'c.pem')
  assert.throws(() => parse('--upstream', 'https://i.example.com', '--upstream-cert', 'c.pem'), /upstreamKey.*both/)
  assert.throws(() => parse('--token', 'a-pad-0123456789', '--token-file', 'f'), /not both/)
})

test('gateway config: TLS listener flags', () => {
  assert.equal(tlsListenerConfig(parse()), null)
  assert.deepEqual(tlsListenerConfig(parse('--tls-cert', 'c.pem', '--tls-key', 'k.pem')), { port: 8883, certPath: 'c.pem', keyPath: 'k.pem', caPath: undefined, crlPath: undefined, requireClientCert: false })
  assert.equal(tlsListenerConfig(parse('--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-port', '0'))!.port, 0)
  assert.throws(() => parse('--tls-cert', 'c.pem'), /tlsKey.*both/)
  assert.throws(() => parse('--tls-port', '8883'), /need --tls-cert/)
  assert.throws(() => parse('--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-require-client-cert'), /needs --tls-ca/)
  assert.throws(() => parse('--no-mqtt'), /no MQTT listener is left/)
  const c = parse('--no-mqtt', '--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-ca', 'ca.pem', '--tls-require-client-cert')
  assert.equal(c.mqtt, false)
  assert.equal(c.mqttPort, 1883, '--mqtt-port 0 still means "pick a free port"')
  assert.equal(tlsListenerConfig(c)!.requireClientCert, true)
  // --tls-crl: with --tls-ca, from a flag or GATEWAY_TLS_CRL
  assert.equal(tlsListenerConfig(parse('--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-ca', 'ca.pem', '--tls-crl', 'ca.crl'))!.crlPath, 'ca.crl')
  assert.equal(parseGatewayConfig({ argv: ['--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-ca', 'ca.pem'], env: { GATEWAY_TLS_CRL: 'env.crl' } }).tlsCrl, 'env.crl')
  assert.throws(() => parse('--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-crl', 'ca.crl'), /tlsCrl.*needs --tls-ca/)
  assert.throws(() => parse('--tls-crl', 'ca.crl'), /need --tls-cert/)
})
