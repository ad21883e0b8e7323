/**
 * Nothing a peer sends throws out of a broker hook. `readCertIdentity` on a TLS
 * socket whose handle is gone (`getPeerCertificate()` returns null) or whose certificate is
 * odd, and `HookGuard` around hooks that throw: the client is refused or closed, the
 * gateway goes on. Fake sockets and clients only (the real reset race:
 * test/integration/tls-reset-race.test.ts).
 */
import assert from 'node:assert/strict'
import { Socket } from 'node:net'
import { test } from 'node:test'
import { TLSSocket } from 'node:tls'
import type { AedesOptions, Client } from 'aedes'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { HookGuard, HOOKS } from '../../gateway/broker/hook-guard.ts'
import { certIdentity, readCertIdentity } from '../../gateway/broker/listeners.ts'

/** A TLSSocket as the broker sees one, without a connection: `authorized` and a scripted `getPeerCertificate`. */
function tlsSocket (authorized: boolean, peer: () => unknown): TLSSocket {
  const s = Object.create(TLSSocket.prototype) as TLSSocket
  Object.defineProperty(s, 'authorized', { value: authorized })
  Object.defineProperty(s, 'getPeerCertificate', { value: peer })
  return s
}

const clientOn = (conn: unknown): Client => ({ id: 'd1', conn }) as unknown as Client

test('certIdentity: a socket whose handle is gone, or an odd certificate, is unreadable, never a throw', () => {
  // the crash: getPeerCertificate() returns null once the handle is gone
  assert.deepEqual(certIdentity(clientOn(tlsSocket(true, () => null))), { kind: 'unreadable', reason: 'the connection is gone' })
  assert.equal(readCertIdentity(tlsSocket(true, () => ({}))).kind, 'unreadable') // verified, yet no certificate
  assert.equal(readCertIdentity(tlsSocket(true, () => ({ subject: {} }))).kind, 'unreadable') // no CN
  assert.equal(readCertIdentity(tlsSocket(true, () => ({ subject: { CN: ['a', 'b'] } }))).kind, 'unreadable') // ambiguous
  assert.equal(readCertIdentity(tlsSocket(true, () => { throw new Error('EBADF') })).kind, 'unreadable')
  assert.deepEqual(readCertIdentity(tlsSocket(true, () => ({ subject: { CN: 'd1' } }))), { kind: 'device', cn: 'd1' })
  // unverified (or no) certificate, and plain TCP: no certificate identity, --auth decides
  assert.deepEqual(readCertIdentity(tlsSocket(false, () => null)), { kind: 'none' })
  assert.deepEqual(certIdentity(clientOn(new Socket())), { kind: 'none' })
  assert.deepEqual(certIdentity(clientOn(undefined)), { kind: 'none' })
})

test('HookGuard: a hook that throws closes its client and is counted; nothing escapes', async () => {
  const registry = new Registry()
  const guard = new HookGuard(registry, pino({ level: 'silent' }))
  const boom = (): never => { throw new TypeError("Cannot read properties of null (reading 'subject')") }
  const wrapped = guard.wrap({ preConnect: boom, authenticate: boom, authorizePublish: boom, authorizeSubscribe: boom, authorizeForward: boom, published: boom } as unknown as AedesOptions)
  let closed = 0
  const client = { id: 'd1', close () { closed++ } } as unknown as Client
  const calls: string[] = []
  const record = (name: string) => (...args: unknown[]) => { calls.push(`${name}:${args[0] instanceof Error ? 'error' : 'ok'}`) }
  const packet = { cmd: 'publish', topic: 't', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false } as never
  assert.doesNotThrow(() => wrapped.preConnect!(client, {} as never, record('preConnect')))
  assert.doesNotThrow(() => wrapped.authenticate!(client, 'u', undefined, record('authenticate')))
  assert.doesNotThrow(() => wrapped.authorizePublish!(client, packet, record('authorizePublish')))
  assert.doesNotThrow(() => wrapped.authorizeSubscribe!(client, { topic: 't', qos: 0 } as never, record('authorizeSubscribe')))
  assert.equal(wrapped.authorizeForward!(client, packet), null, 'nothing forwarded')
  assert.equal(closed, 5, 'each client whose hook threw is closed')
  // the gateway's own publish (no client) fails instead of hanging; published completes
  wrapped.authorizePublish!(null, packet, record('ownPublish'))
  wrapped.published!(packet as never, client, record('published'))
  assert.deepEqual(calls, ['ownPublish:error', 'published:ok'], 'no client callback runs after its hook threw, but these two')
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'gateway_mqtt_hook_errors_total')!
  const by = Object.fromEntries(m.values.map((v) => [v.labels.hook, v.value]))
  for (const h of HOOKS) assert.equal(by[h], h === 'connection' ? 0 : h === 'authorizePublish' ? 2 : 1, h)
  // a client whose close itself throws is still cut off (its socket destroyed)
  let destroyed = false
  const bad = { id: 'x', close () { throw new Error('already gone') }, conn: { destroy () { destroyed = true } } } as unknown as Client
  assert.doesNotThrow(() => guard.fail('authenticate', bad, new Error('x')))
  assert.ok(destroyed)
})
