/**
 * The simulated device's command contract (docs/commands.md, "The device contract") against
 * a real Mosquitto: the test plays the gateway, publishing commands at QoS 1 on
 * `devices/{id}/commands` and reading `devices/{id}/commands/answers`. A command id is
 * executed once and a redelivery answered from the stored answer; a CBOR device gets and
 * answers CBOR; an expired command is not executed; a command published while the device is
 * disconnected reaches it after it reconnects (its session is persistent); `reboot` starts a
 * new boot and the session survives it; `set-interval` changes the reading rate.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import { answersTopic, commandsTopic, decodeDeviceAnswer, encodeDeviceCommand, sniffFormat, type DeviceAnswer, type DeviceCommand, type PayloadFormat } from '../../protocol/commands.ts'
import { createSimulation, simConfig, type Simulation } from '../../device-sim/index.ts'
import { waitFor } from '../helpers/index.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

type Answers = { client: MqttClient, got: { device: string, format: PayloadFormat, answer: DeviceAnswer }[], send: (device: string, c: DeviceCommand, format: PayloadFormat) => Promise<void> }

/** The "gateway": one client that publishes commands and collects every answer. */
async function caller (t: { after: (fn: () => unknown) => void }, url: string): Promise<Answers> {
  const client = mqtt.connect(url, { clientId: `caller-${process.pid}`, clean: true, reconnectPeriod: 0 })
  t.after(() => client.end(true))
  await new Promise<void>((resolve, reject) => { client.once('connect', () => resolve()); client.once('error', reject) })
  const got: Answers['got'] = []
  client.on('message', (topic, payload) => {
    const device = /^devices\/([^/]+)\/commands\/answers$/.exec(topic)?.[1]
    if (device) got.push({ device, format: sniffFormat(payload), answer: decodeDeviceAnswer(payload) })
  })
  await client.subscribeAsync(answersTopic('+'), { qos: 1 })
  return {
    client,
    got,
    send: async (device, c, format) => { await client.publishAsync(commandsTopic(device), encodeDeviceCommand(c, format), { qos: 1 }) }
  }
}

async function startSim (t: { after: (fn: () => unknown) => void }, url: string, prefix: string, payload: 'json' | 'cbor', extra: Parameters<typeof simConfig>[0] = {}): Promise<Simulation> {
  const sim = createSimulation(simConfig({ broker: url, devices: 2, rate: 1, idPrefix: prefix, payload, receipts: false, progress: 'off', reconnectDelayMs: 50, ...extra }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(10_000)
  return sim
}

const later = (ms = 60_000): number => Date.now() + ms

/** The device subscribes after its CONNACK: pings (id p0) until one is answered. */
async function answering (c: Answers, device: string, format: 'json' | 'cbor'): Promise<void> {
  await waitFor(async () => { await c.send(device, { id: 'p0', name: 'ping', args: null, expiresAt: later() }, format); return c.got.some((g) => g.answer.id === 'p0') }, { timeoutMs: 10_000, intervalMs: 200, what: 'the device subscribed and answering' })
}

test('a command id is executed once; a redelivered id gets the stored answer (JSON device)', async (t) => {
  needTools('mosquitto')
  const m = await startMosquitto(t)
  const c = await caller(t, m.url)
  const sim = await startSim(t, m.url, 'cj-', 'json')
  const dev = sim.devices[0]!
  await answering(c, dev.id, 'json')
  await c.send(dev.id, { id: 'c1', name: 'ping', args: null, expiresAt: later() }, 'json')
  const first = await waitFor(() => c.got.find((g) => g.answer.id === 'c1'), { timeoutMs: 5000, what: 'answer to c1' })
  assert.equal(first.format, 'json')
  assert.equal(first.answer.ok, true)
  // the gateway delivers the same id again (after a reconnect, say)
  await c.send(dev.id, { id: 'c1', name: 'ping', args: null, expiresAt: later() }, 'json')
  await waitFor(() => c.got.filter((g) => g.answer.id === 'c1').length === 2, { timeoutMs: 5000, what: 'second answer to c1' })
  const [a1, a2] = c.got.filter((g) => g.answer.id === 'c1')
  assert.deepEqual(a2!.answer, a1!.answer, 'the stored answer, not a new execution')
  const e = dev.flash.get('c1')!
  assert.equal(e.received, 2)
  assert.equal(e.executed, 1)
  assert.equal(e.answersSent, 2)
  // unknown names and fail are answered ok: false
  await c.send(dev.id, { id: 'u1', name: 'frobnicate', args: null, expiresAt: later() }, 'json')
  await c.send(dev.id, { id: 'f1', name: 'fail', args: null, expiresAt: later() }, 'json')
  const u = await waitFor(() => c.got.find((g) => g.answer.id === 'u1'), { timeoutMs: 5000, what: 'answer to u1' })
  assert.deepEqual(u.answer, { id: 'u1', ok: false, error: 'unknown command frobnicate' })
  const f = await waitFor(() => c.got.find((g) => g.answer.id === 'f1'), { timeoutMs: 5000, what: 'answer to f1' })
  assert.equal(f.answer.ok, false)
  // an expired command is answered "expired" and not executed: a reboot that does not happen
  const boots = dev.record.boots.length
  await c.send(dev.id, { id: 'x1', name: 'reboot', args: null, expiresAt: Date.now() - 1000 }, 'json')
  const x = await waitFor(() => c.got.find((g) => g.answer.id === 'x1'), { timeoutMs: 5000, what: 'answer to x1' })
  assert.deepEqual(x.answer, { id: 'x1', ok: false, error: 'expired' })
  assert.equal(dev.flash.get('x1')!.executed, 0)
  // a later command on the same connection was answered after it: the reboot would have come first
  await c.send(dev.id, { id: 'p2', name: 'ping', args: null, expiresAt: later() }, 'json')
  await waitFor(() => c.got.find((g) => g.answer.id === 'p2'), { timeoutMs: 5000, what: 'answer to p2' })
  assert.equal(dev.record.boots.length, boots)
  assert.equal(sim.stats.counters.commandsExpired, 1)
})

test('a CBOR device gets CBOR and answers CBOR; set-interval changes its reading rate', async (t) => {
  needTools('mosquitto')
  const m = await startMosquitto(t)
  const c = await caller(t, m.url)
  const sim = await startSim(t, m.url, 'cc-', 'cbor')
  const dev = sim.devices[1]!
  await answering(c, dev.id, 'cbor')
  assert.equal(c.got.find((g) => g.answer.id === 'p0')!.format, 'cbor')
  assert.equal(sim.snapshot().targetRate, 2)
  await c.send(dev.id, { id: 's1', name: 'set-interval', args: { seconds: 4 }, expiresAt: later() }, 'cbor')
  const s = await waitFor(() => c.got.find((g) => g.answer.id === 's1'), { timeoutMs: 5000, what: 'answer to s1' })
  assert.equal(s.format, 'cbor')
  assert.deepEqual(s.answer, { id: 's1', ok: true, result: { seconds: 4 } })
  assert.equal(sim.snapshot().targetRate, 1.25, 'one device at 1/s, one at 1/4 s')
  await c.send(dev.id, { id: 's2', name: 'set-interval', args: { seconds: 0 }, expiresAt: later() }, 'cbor')
  const s2 = await waitFor(() => c.got.find((g) => g.answer.id === 's2'), { timeoutMs: 5000, what: 'answer to s2' })
  assert.equal(s2.answer.ok, false)
  assert.equal(sim.snapshot().targetRate, 1.25)
})

test('a command sent while the device is disconnected reaches it after it reconnects; reboot reboots and keeps the session', async (t) => {
  needTools('mosquitto')
  const m = await startMosquitto(t)
  const c = await caller(t, m.url)
  // reconnects wait 2 s (x0.5..1.5): time to publish while the device is away
  const sim = await startSim(t, m.url, 'co-', 'json', { reconnectDelayMs: 2000 })
  const dev = sim.devices[0]!
  await answering(c, dev.id, 'json')
  const connects = sim.stats.counters.connects
  dev.dropConnection()
  await waitFor(() => dev.state === 'offline', { timeoutMs: 5000, what: 'the device noticed the drop' })
  await c.send(dev.id, { id: 'o1', name: 'ping', args: null, expiresAt: later() }, 'json')
  // the broker took it (PUBACK above) while the device was still away: the fault landed
  assert.equal(dev.state, 'offline', 'the device reconnected before the command was sent: the test proves nothing')
  assert.equal(sim.stats.counters.connects, connects)
  const o = await waitFor(() => c.got.find((g) => g.answer.id === 'o1'), { timeoutMs: 10_000, what: 'answer to o1 after the reconnect' })
  assert.equal(o.answer.ok, true)
  assert.ok(sim.stats.counters.connects > connects)
  assert.equal(dev.flash.get('o1')!.executed, 1)

  // reboot: answered ok, then a new boot; the flash and the session survive it
  const boots = dev.record.boots.length
  await c.send(dev.id, { id: 'r1', name: 'reboot', args: null, expiresAt: later() }, 'json')
  const r = await waitFor(() => c.got.find((g) => g.answer.id === 'r1'), { timeoutMs: 5000, what: 'answer to r1' })
  assert.equal(r.answer.ok, true)
  await waitFor(() => dev.record.boots.length === boots + 1, { timeoutMs: 5000, what: 'a new boot' })
  assert.equal(dev.record.boots.at(-2)!.endedBy, 'reboot')
  // sent while the rebooted device is away: it gets it from its session
  assert.equal(dev.state, 'offline')
  await c.send(dev.id, { id: 'o2', name: 'ping', args: null, expiresAt: later() }, 'json')
  assert.equal(dev.state, 'offline', 'the device was back before the command was sent: the test proves nothing')
  await waitFor(() => c.got.find((g) => g.answer.id === 'o2'), { timeoutMs: 10_000, what: 'answer to o2 after the reboot' })
  // the reboot command redelivered (say its answer's PUBACK was lost): answered from flash, no second reboot
  await c.send(dev.id, { id: 'r1', name: 'reboot', args: null, expiresAt: later() }, 'json')
  await waitFor(() => c.got.filter((g) => g.answer.id === 'r1').length === 2, { timeoutMs: 5000, what: 'second answer to r1' })
  await c.send(dev.id, { id: 'p3', name: 'ping', args: null, expiresAt: later() }, 'json')
  await waitFor(() => c.got.find((g) => g.answer.id === 'p3'), { timeoutMs: 5000, what: 'answer to p3' })
  assert.equal(dev.record.boots.length, boots + 1, 'no second reboot')
  assert.equal(dev.flash.get('r1')!.executed, 1)
  assert.equal(dev.flash.get('r1')!.received, 2)
})
