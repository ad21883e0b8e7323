/**
 * A persistent session belongs to the principal that made it (persistence.ts
 * `claimSession`, acl.ts `principalKey`). Without a broker: who keeps, who loses what.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { principalKey } from '../../gateway/broker/acl.ts'
import { defaultLimits } from '../../gateway/broker/limits-config.ts'
import { BoundedPersistence } from '../../gateway/broker/persistence.ts'

const pkt = (n: number) => ({ cmd: 'publish', topic: 'news/x', payload: Buffer.from(`m${n}`), qos: 1, retain: false, brokerId: 'b', brokerCounter: n, messageId: n })

async function sessionOf (owner: string): Promise<BoundedPersistence> {
  const p = new BoundedPersistence(defaultLimits(), { limit: () => {}, expired: () => {} })
  assert.equal(await p.claimSession('shared', owner, false), null, 'a new session: nothing removed')
  p.clientConnected({ id: 'shared', clean: false })
  await p.addSubscriptions({ id: 'shared' }, [{ topic: 'news/x', qos: 1 }])
  await p.incomingStorePacket({ id: 'shared' }, pkt(7))
  p.clientDisconnected({ id: 'shared', clean: false })
  await p.outgoingEnqueue({ clientId: 'shared' }, pkt(1))
  return p
}

test('principalKey: device, app and anonymous owners are distinct', () => {
  assert.equal(principalKey({ role: 'device', name: 'd1' }), 'device:d1')
  assert.equal(principalKey({ role: 'app', name: 'd1' }), 'app:d1')
  assert.equal(principalKey({ role: 'anonymous' }), 'anonymous')
})

test('claimSession: the owner keeps its session; another principal removes it and owns the new one', async () => {
  const p = await sessionOf('app:alice')
  assert.equal(p.sessionOwner('shared'), 'app:alice', 'the owner survives connect and disconnect')
  assert.equal(await p.claimSession('shared', 'app:alice', false), null)
  assert.equal(p.queuedMessages, 1)
  assert.equal((await p.subscriptionsByClient({ id: 'shared' })).length, 1)

  assert.equal(await p.claimSession('shared', 'app:mallory', false), 'app:alice', 'the previous owner is reported')
  assert.equal(p.queuedMessages, 0, 'queued and inflight messages gone')
  assert.deepEqual(await p.subscriptionsByClient({ id: 'shared' }), [], 'subscriptions gone')
  await assert.rejects(p.incomingGetPacket({ id: 'shared' }, pkt(7)), /no such packet/, 'inbound QoS 2 state gone')
  assert.equal(p.sessionOwner('shared'), 'app:mallory')
})

test('claimSession: a clean CONNECT by another principal removes the session too; an unknown owner is another principal', async () => {
  const p = await sessionOf('anonymous')
  assert.equal(await p.claimSession('shared', 'device:shared', true), 'anonymous')
  assert.equal(p.sessionCount, 0, 'a clean session is not kept')
  assert.equal(p.queuedMessages, 0)
  // a session tracked without a claim (no owner known): whoever comes cannot be shown to own it
  p.clientConnected({ id: 'x', clean: false })
  assert.equal(await p.claimSession('x', 'app:alice', false), 'unknown')
  assert.equal(p.sessionOwner('x'), 'app:alice')
})
