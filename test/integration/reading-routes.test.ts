/**
 * Readings skip Aedes' routing only while no subscription could match them (issue 22,
 * gateway/broker/reading-routes.ts): local apps subscribed to devices/+/readings, online or
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
