/**
 * What the ingest's /readyz says of its broker (ingest/readyz.ts), and that the
 * broker URL it shows carries no user name or password.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { brokerForDisplay } from '../../ingest/mqtt-consumer.ts'
import { readiness, type MqttConsumerStatus } from '../../ingest/readyz.ts'
import type { Sink } from '../../ingest/sinks/types.ts'

const sink = (ready: boolean): Sink => ({ kind: 'leveldb', ready: () => Promise.resolve(ready) }) as unknown as Sink
const mqtt = (over: Partial<MqttConsumerStatus> = {}): MqttConsumerStatus => ({ broker: 'mqtt://b:1883', connected: true, subscribed: true, connections: 4, connectedConnections: 4, subscribedConnections: 4, batches: 0, unanswerable: 0, ...over })

test('readiness: sink and every broker connection subscribed', async () => {
  assert.deepEqual(await readiness({ sink: sink(true) }), { ok: true, body: { status: 'ready', sink: 'leveldb' } })
  const ok = await readiness({ sink: sink(true), mqttStatus: () => mqtt() })
  assert.equal(ok.ok, true)
  assert.equal(ok.body.mqtt?.broker, 'mqtt://b:1883')
  const notSub = await readiness({ sink: sink(true), mqttStatus: () => mqtt({ subscribed: false, subscribedConnections: 3 }) })
  assert.deepEqual([notSub.ok, notSub.body.status, notSub.body.reasons], [false, 'unready', ['broker mqtt://b:1883: 3 of 4 connections subscribed to the batch topics']])
  const down = await readiness({ sink: sink(false), mqttStatus: () => mqtt({ connected: false, subscribed: false, connectedConnections: 1, subscribedConnections: 1 }) })
  assert.deepEqual(down.body.reasons, ['sink leveldb cannot store', 'broker mqtt://b:1883: 1 of 4 connections up'])
})

test('brokerForDisplay drops the user info of the URL', () => {
  assert.equal(brokerForDisplay('mqtts://ingest:s3cret@broker.example:8883'), 'mqtts://broker.example:8883')
  assert.equal(brokerForDisplay('mqtt://127.0.0.1:1883'), 'mqtt://127.0.0.1:1883')
  assert.equal(brokerForDisplay('::'), '(not a URL)')
})
