/**
 * What the ingest's /readyz says of the commands' broker connection (ingest/readyz.ts,
 * commands/mqtt.ts). It said nothing: with `--mqtt-broker` an ingest whose commands
 * connection was down (no command reports applied, no commands published to the gateways)
 * answered 200 as long as the batch consumer was up.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { readiness, type CommandsMqttStatus, type MqttConsumerStatus } from '../../ingest/readyz.ts'
import type { Sink } from '../../ingest/sinks/types.ts'

const sink = { kind: 'leveldb', ready: () => Promise.resolve(true) } as unknown as Sink
const consumer: MqttConsumerStatus = { broker: 'mqtt://b:1883', connected: true, subscribed: true, connections: 1, connectedConnections: 1, subscribedConnections: 1, batches: 0, unanswerable: 0 }
const commands = (over: Partial<CommandsMqttStatus> = {}): CommandsMqttStatus => ({ broker: 'mqtt://b:1883', connected: true, subscribed: true, ...over })

test('readiness: the commands connection up and subscribed is ready, and shown', async () => {
  const r = await readiness({ sink, mqttStatus: () => consumer, commandsMqttStatus: () => commands() })
  assert.deepEqual(r, { ok: true, body: { status: 'ready', sink: 'leveldb', mqtt: consumer, commandsMqtt: commands() } })
})

test('readiness: the commands connection down, or not subscribed, is unready with a reason naming it, the batch consumer up', async () => {
  const down = await readiness({ sink, mqttStatus: () => consumer, commandsMqttStatus: () => commands({ connected: false, subscribed: false }) })
  assert.deepEqual([down.ok, down.body.status, down.body.reasons], [false, 'unready', ['broker mqtt://b:1883: the commands connection is down']])
  assert.deepEqual(down.body.commandsMqtt, commands({ connected: false, subscribed: false }))
  const notSub = await readiness({ sink, mqttStatus: () => consumer, commandsMqttStatus: () => commands({ subscribed: false }) })
  assert.deepEqual([notSub.ok, notSub.body.reasons], [false, ['broker mqtt://b:1883: the commands connection is not subscribed to the command reports']])
})

test('readiness without a commands connection (no --mqtt-broker) names none', async () => {
  assert.deepEqual(await readiness({ sink, commandsMqttStatus: () => null }), { ok: true, body: { status: 'ready', sink: 'leveldb' } })
})
