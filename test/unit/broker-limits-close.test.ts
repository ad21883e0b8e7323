/**
 * A publish slowed by the publish rate waits on a timer (limit-rules.ts). That timer was not
 * tracked: `Limits.close()` left it running, so it kept the process alive past the broker's
 * close and then ran the broker's hooks, and the intake behind them, on a closed gateway.
 * close() now clears every such timer; on the old code the count of active timers stayed
 * one up after close().
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import pino from 'pino'
import type { Client } from 'aedes'
import { Metrics } from '../../gateway/metrics/index.ts'
import { defaultLimits } from '../../gateway/broker/limits-config.ts'
import { Limits } from '../../gateway/broker/limits.ts'

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length

test('close() leaves no timer of a publish slowed by the publish rate', () => {
  const limits = new Limits({ ...defaultLimits(), publishRateLimit: 0.1, publishRateBurst: 1 }, new Metrics({ defaultMetrics: false }), pino({ level: 'silent' }))
  const client = { id: 'sensor-1', conn: { remoteAddress: '192.0.2.1' } } as unknown as Client
  const packet = { topic: 'devices/sensor-1/readings', qos: 1, retain: false, payload: Buffer.from('{}') }
  const calls: Array<Error | undefined> = []
  const before = timers()
  limits.checkPublish(client, packet, (err) => calls.push(err))
  assert.deepEqual(calls, [undefined] as Array<Error | undefined>, 'the first publish is within the burst')
  limits.checkPublish(client, packet, (err) => calls.push(err))
  assert.equal(calls.length, 1, 'the second waits ~10 s for a token')
  assert.equal(timers(), before + 1, 'the slowed publish waits on a timer')
  limits.close()
  assert.equal(timers(), before, 'close() cleared the timer of the slowed publish')
  limits.close() // idempotent
  assert.equal(calls.length, 1, 'a cleared timer lets nothing through')
})
