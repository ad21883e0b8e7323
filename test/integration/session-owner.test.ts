/**
 * An offline persistent session (CleanSession=0) passed to whoever connected with
 * its client id, queued messages and subscriptions included. Now it belongs to the principal
 * that made it: another principal with that client id starts clean (the old session is
 * removed, counted and logged), the owner itself gets its session back.
 */
import assert from 'node:assert/strict'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { hashPassword } from '../../gateway/broker/auth.ts'
import type { Gateway } from '../../gateway/index.ts'
import { startGateway } from '../helpers/gateway.ts'
import { tempDir, waitFor } from '../helpers/index.ts'

type T = Parameters<typeof tempDir>[0]

async function authGateway (t: T): Promise<Gateway> {
  const dir = await tempDir(t)
  const file = join(dir, 'auth.json')
  const apps: Record<string, string> = {}
  for (const name of ['alice', 'mallory', 'feed']) apps[name] = await hashPassword(`${name}-pass`, 1024)
  await writeFile(file, JSON.stringify({ devices: {}, apps }))
  return startGateway(t, { auth: 'file', authFile: file })
}

type Session = { c: mqtt.MqttClient, sessionPresent: boolean, got: string[] }

/** Connects app `user` with client id `shared`; `got` collects every message, from the first byte after CONNACK. */
function connectApp (t: T, port: number, user: string, clientId: string, clean: boolean): Promise<Session> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, username: user, password: `${user}-pass`, clean, reconnectPeriod: 0, connectTimeout: 5000 })
    t.after(() => c.endAsync(true).catch(() => {}))
    const got: string[] = []
    c.on('message', (topic, payload) => got.push(`${topic} ${String(payload)}`))
    c.once('connect', (connack) => resolve({ c, sessionPresent: connack.sessionPresent, got }))
    c.once('error', reject)
  })
}

const metric = async (gw: Gateway, name: string): Promise<number> =>
  (await gw.metrics.registry.getMetricsAsJSON()).find((m) => m.name === name)?.values.reduce((n, v) => n + v.value, 0) ?? -1

/**
 * A marker the client subscribes to now, published after everything else: once it arrives,
 * what the broker had queued for the client, or would route to it, has arrived too.
 */
async function settle (feed: mqtt.MqttClient, s: Session, tag: string): Promise<void> {
  await s.c.subscribeAsync(`marker/${tag}`, { qos: 1 })
  await feed.publishAsync(`marker/${tag}`, tag, { qos: 1 })
  await waitFor(() => s.got.includes(`marker/${tag} ${tag}`), { timeoutMs: 5000, what: `marker ${tag}` })
}

test('session owner: another principal with the client id starts clean; the owner keeps its session', async (t) => {
  const gw = await authGateway(t)
  const port = gw.mqttPort
  const queued = (): number => gw.broker.limits.persistence.queuedMessages
  const feed = (await connectApp(t, port, 'feed', 'feed-1', true)).c
  // the broker has seen `shared` go (else a CONNECT by another principal is a refused takeover, not this test)
  const away = (c: mqtt.MqttClient): Promise<unknown> => c.endAsync().then(() => waitFor(() => gw.broker.connected === 1, { timeoutMs: 5000, what: 'only the feed connected' }))

  // alice's persistent session: a subscription, then a message queued while she is away
  const a1 = await connectApp(t, port, 'alice', 'shared', false)
  await a1.c.subscribeAsync('news/x', { qos: 1 })
  await away(a1.c)
  await feed.publishAsync('news/x', 'for-alice-1', { qos: 1 })
  await waitFor(() => queued() === 1, { timeoutMs: 5000, what: 'the message queued for alice' })

  // the same principal gets it back: session present, the queued message delivered
  const a2 = await connectApp(t, port, 'alice', 'shared', false)
  assert.equal(a2.sessionPresent, true)
  await waitFor(() => a2.got.includes('news/x for-alice-1'), { timeoutMs: 5000, what: 'alice gets her queued message' })
  await away(a2.c)
  await feed.publishAsync('news/x', 'for-alice-2', { qos: 1 })
  await waitFor(() => queued() === 1, { timeoutMs: 5000, what: 'the second message queued for alice' })

  const wipedBefore = await metric(gw, 'gateway_mqtt_sessions_wiped_total')
  // another principal, same client id: a clean start, nothing of alice's
  const m = await connectApp(t, port, 'mallory', 'shared', false)
  assert.equal(m.sessionPresent, false, 'no session present for another principal')
  await feed.publishAsync('news/x', 'after-mallory', { qos: 1 }) // would reach mallory had she inherited the subscription
  await settle(feed, m, 'm')
  assert.deepEqual(m.got, ['marker/m m'], 'neither the queued message nor the subscription passed to mallory')
  // (the marker itself sits in the queue until mallory's PUBACK is processed)
  await waitFor(() => queued() === 0, { timeoutMs: 5000, what: 'alice\'s queued message gone, not kept for later' })
  const topics = (await gw.broker.limits.persistence.subscriptionsByClient({ id: 'shared' })).map((s) => (s as { topic: string }).topic)
  assert.deepEqual(topics, ['marker/m'], 'news/x is not among mallory\'s subscriptions')
  assert.equal(wipedBefore, 0, 'nothing wiped while alice alone used her session')
  assert.equal(await metric(gw, 'gateway_mqtt_sessions_wiped_total'), 1, 'the removal of alice\'s session counted')
  await away(m.c)

  // alice comes back to a session mallory made: she starts clean too (one session per client id)
  const a3 = await connectApp(t, port, 'alice', 'shared', false)
  assert.equal(a3.sessionPresent, false)
  await feed.publishAsync('marker/m', 'for-mallory', { qos: 1 })
  await settle(feed, a3, 'a')
  assert.deepEqual(a3.got, ['marker/a a'], 'mallory\'s subscription did not pass to alice either')
  assert.equal(await metric(gw, 'gateway_mqtt_sessions_wiped_total'), 2)
})

test('session owner: another principal CONNECTing while the owner\'s CONNECT is still in progress is refused', async (t) => {
  const gw = await authGateway(t)
  const port = gw.mqttPort
  const p = gw.broker.limits.persistence
  const feed = (await connectApp(t, port, 'feed', 'feed-1', true)).c
  const a1 = await connectApp(t, port, 'alice', 'shared', false)
  await a1.c.subscribeAsync('news/x', { qos: 1 })
  await a1.c.endAsync()
  await waitFor(() => gw.broker.connected === 1, { timeoutMs: 5000, what: 'alice gone' })
  await feed.publishAsync('news/x', 'for-alice', { qos: 1 })
  await waitFor(() => p.queuedMessages === 1, { timeoutMs: 5000, what: 'queued for alice' })

  // hold alice's reconnect after authenticate, where Aedes restores her subscriptions
  let release = (): void => {}
  const gate = new Promise<void>((resolve) => { release = resolve })
  let held = false
  const restore = p.subscriptionsByClient.bind(p)
  p.subscriptionsByClient = async (c) => {
    if (c.id === 'shared' && !held) { held = true; await gate }
    return restore(c)
  }
  const a2p = connectApp(t, port, 'alice', 'shared', false)
  await waitFor(() => held, { timeoutMs: 5000, what: 'alice\'s CONNECT held past authenticate (not luck)' })
  await assert.rejects(connectApp(t, port, 'mallory', 'shared', false), /Identifier rejected/i)
  release()
  const a2 = await a2p
  assert.equal(a2.sessionPresent, true)
  await waitFor(() => a2.got.includes('news/x for-alice'), { timeoutMs: 5000, what: 'alice gets her queued message' })
  assert.equal(await metric(gw, 'gateway_mqtt_sessions_wiped_total'), 0)
})
