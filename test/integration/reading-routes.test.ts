/**
 * Readings skip Aedes' routing only while no subscription could match them (a shortcut that saves
 * intake CPU, gateway/broker/reading-routes.ts): local apps subscribed to devices/+/readings, online or
 * with a persistent session, still get every reading.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { MqttClient } from 'mqtt'
import { waitFor } from '../helpers/index.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { couldMatchReadings } from '../../gateway/broker/reading-routes.ts'

/** Aedes numbers every packet it routes (aedes-packet's brokerCounter). */
const routed = (gw: { broker: { aedes: unknown } }): number => (gw.broker.aedes as { counter: number }).counter

function collect (c: MqttClient): string[] {
  const got: string[] = []
  c.on('message', (topic, payload) => got.push(`${topic} ${payload.toString('hex')}`))
  return got
}

async function publishAll (c: MqttClient, device: string, from: number, n: number): Promise<string[]> {
  const sent: string[] = []
  for (let i = from; i < from + n; i++) {
    const p = reading(i)
    sent.push(`devices/${device}/readings ${p.toString('hex')}`)
    await publish(c, `devices/${device}/readings`, p)
  }
  return sent
}

test('filters that could match a readings topic', () => {
  for (const f of ['#', '+/#', 'devices/#', 'devices/+/readings', 'devices/d1/readings', '+/+/+', 'devices/+/readings/#', '$share/g/devices/+/readings']) assert.equal(couldMatchReadings(f), true, f)
  for (const f of ['$SYS/#', '$SYS/+/heartbeat', 'devices/+/receipts', 'devices/+', 'devices/+/readings/x', 'site/#', '+/+', '+/+/+/+']) assert.equal(couldMatchReadings(f), false, f)
})

test('with no subscriber readings are not routed; an app subscribed to devices/+/readings gets every one, then none after it unsubscribes', async (t) => {
  const gw = await startGateway(t)
  const dev = await connectDevice(t, gw.mqttPort, 'route-1')
  const before = routed(gw)
  await publishAll(dev, 'route-1', 1, 20)
  assert.equal(routed(gw) - before, 0, 'no subscriber: Aedes routed readings')
  assert.equal(gw.store.items, 20)

  const app = await connectDevice(t, gw.mqttPort, 'local-app')
  const got = collect(app)
  assert.equal((await app.subscribeAsync('devices/+/readings', { qos: 1 }))[0]!.qos, 1)
  const dev2 = await connectDevice(t, gw.mqttPort, 'route-2')
  const sent = [...await publishAll(dev, 'route-1', 21, 30), ...await publishAll(dev2, 'route-2', 1, 30)]
  await waitFor(() => got.length >= sent.length, { timeoutMs: 5000 })
  assert.deepEqual(got.sort(), sent.sort())

  await app.unsubscribeAsync('devices/+/readings')
  const mid = routed(gw)
  await publishAll(dev, 'route-1', 51, 10)
  assert.equal(routed(gw) - mid, 0, 'after the last unsubscribe readings are not routed again')
  assert.equal(gw.store.items, 90)
})

test('a persistent session subscribed to devices/# gets the readings published while it was offline', async (t) => {
  const gw = await startGateway(t)
  const opts = { clean: false }
  let app = await connectDevice(t, gw.mqttPort, 'offline-app', opts)
  await app.subscribeAsync('devices/#', { qos: 1 })
  await app.endAsync()
  const dev = await connectDevice(t, gw.mqttPort, 'route-3')
  const sent = await publishAll(dev, 'route-3', 1, 25)
  app = await connectDevice(t, gw.mqttPort, 'offline-app', opts)
  const got = collect(app)
  await waitFor(() => got.length >= sent.length, { timeoutMs: 5000 })
  assert.deepEqual(got.sort(), sent.sort())
})

test('session churn: every session the persistence drops leaves the count, so it stays bounded and the shortcut comes back', async (t) => {
  // Regression guard: sessions removed by the persistence itself (eviction past maxSessions,
  // expiry, a takeover) used to bypass the routing shortcut's count, which kept every such
  // client id with its filters for good: the map grew with each abandoned session and
  // readings were routed to nobody from the first persistent subscriber on.
  const maxSessions = 5
  const gw = await startGateway(t, { maxSessions })
  const routes = gw.broker.routes
  const p = gw.broker.limits.persistence
  const dev = await connectDevice(t, gw.mqttPort, 'churn-dev')
  let seq = 0
  let peak = 0
  for (let i = 0; i < 40; i++) {
    const id = `churn-app-${i}`
    const app = await connectDevice(t, gw.mqttPort, id, { clean: false })
    await app.subscribeAsync(i % 2 === 0 ? 'devices/#' : 'devices/+/readings', { qos: 1 })
    await app.endAsync()
    if (i % 10 === 9) {
      // a persistent session could match: readings are routed (queued for it)
      const before = routed(gw)
      await publishAll(dev, 'churn-dev', ++seq, 1)
      assert.ok(routed(gw) > before, `after ${i + 1} sessions a reading was not routed although a persistent session subscribed`)
    }
    // every fourth one comes back with CleanSession=1: Aedes ends its session itself
    if (i % 4 === 3) await (await connectDevice(t, gw.mqttPort, id, { clean: true })).endAsync()
    peak = Math.max(peak, routes.sessionCount)
    assert.ok(routes.sessionCount <= p.sessionCount, `${routes.sessionCount} sessions counted for routing, the persistence keeps ${p.sessionCount}`)
  }
  assert.ok(peak <= maxSessions + 1, `the routing count held up to ${peak} sessions (maxSessions ${maxSessions})`)
  assert.ok(peak > 0, 'no session was ever counted: the churn did not reach the count')

  // every remaining session expires (as the sweep does once they have been offline long enough)
  await waitFor(() => gw.broker.aedes.connectedClients === 1, { timeoutMs: 5000, what: 'only the device connected' })
  assert.ok(p.expire(Date.now() + 366 * 86400 * 1000) > 0, 'sessions were left to expire')
  assert.equal(p.sessionCount, 0)
  assert.equal(routes.sessionCount, 0, 'sessions gone from the persistence are still counted for routing')
  assert.equal(routes.idle(), true, 'the shortcut stays off with no subscription left')
  const before = routed(gw)
  await publishAll(dev, 'churn-dev', ++seq, 10)
  assert.equal(routed(gw) - before, 0, 'readings are routed although no subscription could match them')
  assert.equal(gw.store.items, seq + 9)
})
