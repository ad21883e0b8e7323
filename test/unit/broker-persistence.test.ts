/**
 * BoundedPersistence (gateway/broker/persistence.ts) without a broker: retained
 * quota and matching, per-session and total queue bounds, session expiry and eviction.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { BoundedPersistence, type PersistenceLimit } from '../../gateway/broker/persistence.ts'
import { defaultLimits, type BrokerLimits } from '../../gateway/broker/limits-config.ts'
import { parseGatewayConfig } from '../../gateway/config.ts'

type Pkt = Parameters<BoundedPersistence['storeRetained']>[0]

function make (over: Partial<BrokerLimits> = {}): { p: BoundedPersistence, hits: Array<[PersistenceLimit, string]>, expired: string[] } {
  const hits: Array<[PersistenceLimit, string]> = []
  const expired: string[] = []
  const p = new BoundedPersistence({ ...defaultLimits(), ...over }, { limit: (l, id) => hits.push([l, id]), expired: (id) => expired.push(id) })
  return { p, hits, expired }
}

const pub = (topic: string, payload: string, extra: Partial<Pkt> = {}): Pkt => ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, retain: true, brokerId: 'b', brokerCounter: 1, ...extra })

async function drain (s: AsyncIterable<unknown>): Promise<Pkt[]> {
  const out: Pkt[] = []
  for await (const x of s) out.push(x as Pkt)
  return out
}

test('the limit flags are gateway flags with their defaults', () => {
  const c = parseGatewayConfig({ argv: ['--max-queued-messages', '5', '--no-retain-available', '--publish-rate-action', 'disconnect'], env: { GATEWAY_MAX_SUBSCRIPTIONS: '7' } })
  assert.equal(c.maxQueuedMessages, 5)
  assert.equal(c.retainAvailable, false)
  assert.equal(c.publishRateAction, 'disconnect')
  assert.equal(c.maxSubscriptions, 7)
  assert.equal(c.maxRetainedMessages, 1000)
  assert.throws(() => parseGatewayConfig({ argv: ['--max-qos', '3'], env: {} }), /maxQos/)
})

test('retained: count and byte quotas, replacement and clearing adjust the accounting', async () => {
  const { p, hits } = make({ maxRetainedMessages: 2, maxRetainedBytes: 100 })
  await p.storeRetained(pub('a/1', 'x'.repeat(10)))
  await p.storeRetained(pub('a/2', 'x'.repeat(10)))
  await p.storeRetained(pub('a/3', 'x'.repeat(10)))
  assert.equal(p.retainedCount, 2)
  assert.deepEqual(hits, [['retained_messages', '']])
  assert.equal(p.retainedRefusal('a/3', 13), 'retained_messages')
  assert.equal(p.retainedRefusal('a/1', 90), 'retained_bytes', 'a replacement counts its own old size out')
  assert.equal(p.retainedRefusal('a/1', 80), null)
  await p.storeRetained(pub('a/1', 'y'.repeat(50)))
  assert.equal(p.retainedSize, 3 + 50 + 3 + 10)
  await p.storeRetained(pub('a/1', ''))
  assert.equal(p.retainedCount, 1)
  assert.equal(p.retainedSize, 13)
})

test('retained replay: MQTT filter matching, $-topics hidden from leading wildcards, stops when the client closes', async () => {
  const { p } = make()
  for (const t of ['a/b', 'a/b/c', 'a', 'x/b', '$SYS/x']) await p.storeRetained(pub(t, 'v'))
  const topics = async (filters: string[]): Promise<string[]> => (await drain(p.createRetainedStreamCombi(filters))).map((x) => x.topic).sort()
  assert.deepEqual(await topics(['a/#']), ['a', 'a/b', 'a/b/c'])
  assert.deepEqual(await topics(['+/b']), ['a/b', 'x/b'])
  assert.deepEqual(await topics(['#']), ['a', 'a/b', 'a/b/c', 'x/b'])
  assert.deepEqual(await topics(['$SYS/#']), ['$SYS/x'])
  assert.deepEqual(await topics(['a/b']), ['a/b'])
  const client = { id: 'c', closed: false }
  p.replayClient = client
  const stream = p.createRetainedStreamCombi(['#'])
  const got: Pkt[] = []
  for await (const x of stream) { got.push(x as Pkt); client.closed = true }
  assert.equal(got.length, 1, 'nothing more is replayed once the client is closed')
})

test('queues: at most maxQueuedMessages per session, newest dropped; the total byte bound; unqueued packets are no error', async () => {
  const { p, hits } = make({ maxQueuedMessages: 3, maxQueuedBytesTotal: 3 * (2 + 256) + 100 }) // three 2-byte messages fit, a 40-byte one more does not
  p.clientConnected({ id: 's', clean: false })
  for (let i = 1; i <= 5; i++) await p.outgoingEnqueueCombi([{ clientId: 's' }], pub('t', `m${i}`, { brokerCounter: i }))
  assert.equal(p.queuedMessages, 3)
  assert.deepEqual((await drain(p.outgoingStream({ id: 's' }))).map((x) => String(x.payload)), ['m1', 'm2', 'm3'])
  assert.deepEqual(hits, [['queued_messages', 's'], ['queued_messages', 's']])
  await p.outgoingEnqueue({ clientId: 'other' }, pub('t', 'z'.repeat(40)))
  assert.deepEqual(hits.at(-1), ['queued_bytes_total', 'other'])
  // Aedes updates the message id of a delivered packet, and clears it on PUBACK
  await p.outgoingUpdate({ id: 's' }, pub('t', 'm1', { brokerCounter: 1, messageId: 42 }))
  await p.outgoingUpdate({ id: 's' }, pub('t', 'm5', { brokerCounter: 5, messageId: 43 })) // not queued: resolves
  assert.equal(String((await p.outgoingClearMessageId({ id: 's' }, pub('t', '', { messageId: 42 })))?.payload), 'm1')
  assert.equal(p.queuedMessages, 2)
  assert.equal(await p.outgoingClearMessageId({ id: 's' }, pub('t', '', { messageId: 43 })), undefined)
})

test('sessions: an offline one expires with its queue and subscriptions; past maxSessions the longest-offline goes', async () => {
  const { p, hits, expired } = make({ sessionExpirySec: 10, maxSessions: 2 })
  p.clientConnected({ id: 'a', clean: false })
  await p.addSubscriptions({ id: 'a' }, [{ topic: 't/#', qos: 1 }])
  await p.outgoingEnqueueCombi(await p.subscriptionsByTopic('t/x'), pub('t/x', 'q'))
  assert.equal(p.queuedMessages, 1)
  p.clientDisconnected({ id: 'a', clean: false })
  assert.equal(p.expire(Date.now() + 5000), 0, 'not yet')
  assert.equal(p.expire(Date.now() + 11_000), 1)
  assert.deepEqual(expired, ['a'])
  assert.equal(p.queuedMessages, 0)
  assert.equal(p.sessionCount, 0)
  await new Promise((r) => setImmediate(r))
  assert.deepEqual(await p.subscriptionsByClient({ id: 'a' }), [])
  assert.deepEqual(await p.subscriptionsByTopic('t/x'), [])

  for (const id of ['b', 'c']) { p.clientConnected({ id, clean: false }); p.clientDisconnected({ id, clean: false }) }
  p.clientConnected({ id: 'd', clean: false })
  assert.equal(p.sessionCount, 2)
  assert.deepEqual(hits, [['sessions', 'b']])
  p.clientConnected({ id: 'e', clean: true })
  assert.equal(p.sessionCount, 2, 'a clean session is not kept')
})

test('every end of a session reaches the watchers: a CleanSession=1 CONNECT, expiry, eviction past maxSessions, a takeover', async () => {
  // Sessions the persistence removed on its own used to skip the watchers (reading-routes.ts
  // counts persistent subscriptions through them), which then kept those sessions for good.
  const { p } = make({ sessionExpirySec: 10, maxSessions: 2 })
  const log: string[] = []
  p.watch({
    added: (id, filters) => log.push(`added ${id} ${filters.join(',')}`),
    removed: (id, filters) => log.push(`removed ${id} ${filters.join(',')}`),
    ended: (id) => log.push(`ended ${id}`)
  })
  const session = async (id: string): Promise<void> => {
    p.clientConnected({ id, clean: false })
    await p.addSubscriptions({ id }, [{ topic: 'devices/#', qos: 1 }])
    p.clientDisconnected({ id, clean: false })
  }
  await session('clean')
  await p.removeSubscriptions({ id: 'clean' }, ['devices/#'])
  await p.cleanSubscriptions({ id: 'clean' }) // Aedes, on a CleanSession=1 CONNECT
  await session('old')
  assert.equal(p.expire(Date.now() + 11_000), 1)
  await session('a')
  await session('b')
  await session('c') // the third: 'a' (offline longest) is evicted as 'c' connects
  assert.equal(await p.claimSession('b', 'app:mallory', false), 'unknown') // another principal takes 'b' over
  assert.deepEqual(log, [
    'added clean devices/#', 'removed clean devices/#', 'ended clean',
    'added old devices/#', 'ended old',
    'added a devices/#', 'added b devices/#', 'ended a', 'added c devices/#',
    'ended b'
  ])
})

test('inbound QoS 2: stored until PUBREL deletes it, "not stored" is one stackless rejection, cleanIncoming forgets it', async () => {
  const { p } = make()
  const c = { id: 'q2' }
  const pkt = { cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 2, messageId: 7 }
  const miss1 = await p.incomingGetPacket(c, pkt).then(() => null, (e: Error) => e)
  const miss2 = await p.incomingGetPacket(c, { ...pkt, messageId: 8 }).then(() => null, (e: Error) => e)
  assert.ok(miss1 instanceof Error && miss1.message === 'no such packet')
  assert.equal(miss1, miss2, 'the same error object: no stack built per new QoS 2 PUBLISH')
  await p.incomingStorePacket(c, pkt)
  const got = await p.incomingGetPacket(c, pkt)
  assert.equal(got.messageId, 7)
  assert.equal(got.topic, 't')
  await p.incomingDelPacket(c, pkt)
  await assert.rejects(p.incomingDelPacket(c, pkt), /no such packet/)
  await assert.rejects(p.incomingGetPacket(c, pkt), /no such packet/)
  await p.incomingStorePacket(c, pkt)
  await p.cleanIncoming(c)
  await assert.rejects(p.incomingGetPacket(c, pkt), /no such packet/)
})
