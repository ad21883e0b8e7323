/**
 * The one loopback rule: a table of spellings, and the four gates that
 * relax a default on loopback (admin host, MQTT host with --auth none, http:// upstream,
 * ingest read side) asked the same table, so they cannot drift apart again.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseGatewayConfig } from '../../gateway/config.ts'
import { withDefaults } from '../../ingest/config.ts'
import { ReadAuth } from '../../ingest/read-auth.ts'
import { isLoopback, splitHostHeader } from '../../protocol/loopback.ts'

// [host, loopback?] — hosts as a bind address or URL host name would spell them (no port)
const TABLE: Array<[string, boolean]> = [
  ['127.0.0.1', true],
  ['127.8.9.10', true],
  ['127.255.255.254', true],
  ['localhost', true],
  ['LOCALHOST', true],
  ['::1', true],
  ['[::1]', true],
  ['0:0:0:0:0:0:0:1', true],
  ['0000:0000:0000:0000:0000:0000:0000:0001', true],
  ['0::0:1', true],
  ['::0001', true],
  ['[0:0:0:0:0:0:0:1]', true],
  ['::ffff:127.0.0.1', true],
  ['::FFFF:127.1.2.3', true],
  ['[::ffff:127.0.0.1]', true],
  ['::ffff:7f00:1', true],
  ['0:0:0:0:0:ffff:7f00:0001', true],
  ['0:0:0:0:0:ffff:127.0.0.1', true],
  // lookalikes and everything-else
  ['', false],
  ['0.0.0.0', false],
  ['::', false],
  ['[::]', false],
  ['128.0.0.1', false],
  ['126.255.255.255', false],
  ['10.0.0.1', false],
  ['127.0.0.1.evil.com', false],
  ['127.1', false],
  ['127.000.000.001', false],
  ['localhost.evil', false],
  ['localhost.', false],
  ['evil-localhost', false],
  ['foo.localhost', false],
  ['ip6-localhost', false],
  ['ip6-loopback', false],
  ['::2', false],
  ['1::1', false],
  ['::1%lo', false],
  ['fe80::1', false],
  ['::ffff:10.0.0.1', false],
  ['::ffff:a00:1', false],
  ['::127.0.0.1', false],
  ['::ffff:0:127.0.0.1', false],
  ['[::1]:8081', false],
  ['127.0.0.1:8081', false],
  ['[::1', false],
  ['::1]', false],
  ['gateway.local', false]
]

test('isLoopback: the table of spellings', () => {
  for (const [host, want] of TABLE) assert.equal(isLoopback(host), want, JSON.stringify(host))
})

test('splitHostHeader: host and port of a Host header', () => {
  assert.deepEqual(splitHostHeader('127.0.0.1:8081'), { host: '127.0.0.1', port: 8081 })
  assert.deepEqual(splitHostHeader('localhost'), { host: 'localhost', port: null })
  assert.deepEqual(splitHostHeader('[::1]:8081'), { host: '[::1]', port: 8081 })
  assert.deepEqual(splitHostHeader('[::1]'), { host: '[::1]', port: null })
  assert.deepEqual(splitHostHeader('rebind.example:8081'), { host: 'rebind.example', port: 8081 })
  for (const bad of ['', '::1', '::1:8081', 'a:b:c', 'x:99999', '[::1]x', 'a b:1', 'host:']) assert.equal(splitHostHeader(bad), null, bad)
})

/** Each gate's answer to "is this host loopback?", read from its own decision. */
const gates: Record<string, (host: string) => Promise<boolean>> = {
  'gateway --admin-host (token needed off loopback)': async (h) => {
    try { parseGatewayConfig({ argv: ['--admin-host', h], env: {} }); return true } catch (e) { if (/admin-host/.test((e as Error).message)) return false; throw e }
  },
  'gateway --host with --auth none': async (h) => {
    try { parseGatewayConfig({ argv: ['--host', h], env: {} }); return true } catch (e) { if (/--auth none on --host/.test((e as Error).message)) return false; throw e }
  },
  'gateway http:// upstream': async (h) => {
    const url = `http://${h.includes(':') && !h.startsWith('[') ? `[${h}]` : h}:8080`
    if (!URL.canParse(url)) return isLoopback(h) // not expressible as a URL host: nothing to compare
    // WHATWG URL rewrites some hosts (127.1 -> 127.0.0.1, as the HTTP client would connect): only compare what is left unchanged
    if (new URL(url).hostname.replace(/^\[|\]$/g, '') !== h.replace(/^\[|\]$/g, '').toLowerCase()) return isLoopback(h)
    try { parseGatewayConfig({ argv: ['--upstream', url, '--token', 'upstream-secret-0123456789'], env: {} }); return true } catch (e) { if (/in clear/.test((e as Error).message)) return false; throw e }
  },
  'ingest --host without read token': async (h) => {
    try { await ReadAuth.create(withDefaults({ host: h })); return true } catch (e) { if (/open to anyone/.test((e as Error).message)) return false; throw e }
  }
}

test('the four loopback gates agree with isLoopback on every spelling', async () => {
  const rows = TABLE.filter(([h]) => h !== '' && !/\]:\d|^\d+\.\d+\.\d+\.\d+:\d/.test(h))
  for (const [name, gate] of Object.entries(gates)) {
    for (const [host, want] of rows) {
      // URL normalises some spellings (upper case, zero groups) before the gate sees them; the verdict must still match
      assert.equal(await gate(host), want, `${name}: ${JSON.stringify(host)}`)
    }
  }
})
