/**
 * After an outage the backlog drained in slow steps: each partition had failed on its own
 * and waited out its own back-off (up to --retry-max-ms, 30 s), so partitions came back one
 * at a time, each at the end of its wait, although the first answer already showed that
 * the upstream was back. Now a request that gets an answer wakes every partition in
 * back-off. The upstream sits behind a fault proxy that refuses connections during the
 * outage; the back-off is made long (10-20 s from the first failure) so that only the wake
 * can drain the backlog before it ends, and the test counts events (requests, failures,
 * wakes), not time.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { partitionOf } from '../../protocol/index.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { startFakeUpstream } from '../helpers/fake-upstream.ts'
import { FaultProxy, promValue } from '../helpers/fault-proxy.ts'
import { waitFor } from '../helpers/index.ts'

const PARTITIONS = 4

/** A device id for each partition: `sensor-N`, the first N that hashes there. */
function devicePer (p: number): string {
  for (let i = 0; ; i++) if (partitionOf(`sensor-${i}`, PARTITIONS) === p) return `sensor-${i}`
}

test('after an outage, one answered request wakes the partitions in back-off: one request each drains the backlog', async (t) => {
  const up = await startFakeUpstream(t)
  const proxy = await FaultProxy.start(t, Number(new URL(up.url).port))
  const gw = await startGateway(t, { partitions: PARTITIONS, upstream: [`http://${proxy.url}`], token: 'secret-pad-01234', lingerMs: 0, retryBaseMs: 20_000, retryMaxMs: 30_000, requestTimeoutMs: 2000 })
  const metric = async (name: string, labels = ''): Promise<number> => promValue(await gw.metrics.registry.metrics(), name + labels) ?? 0
  proxy.reset() // the outage: connections refused

  // partitions 0..2 get a backlog during the outage; each fails once and backs off 10-20 s
  const devs = [0, 1, 2].map(devicePer)
  for (const [i, id] of devs.entries()) {
    const c = await connectDevice(t, gw.mqttPort, id)
    for (let seq = 1; seq <= 5; seq++) await publish(c, `devices/${id}/readings`, reading(seq, { boot: 1 + i }))
  }
  await waitFor(async () => await metric('gateway_upstream_retries_total', '{reason="network"}') >= 3, { timeoutMs: 30_000, what: 'each backlogged partition failed once' })
  const failures = await metric('gateway_upstream_retries_total', '{reason="network"}')
  assert.equal(up.requests, 0)

  // the upstream is back; a reading on the idle partition 3 gets the first answer
  proxy.heal()
  const last = devicePer(3)
  const c = await connectDevice(t, gw.mqttPort, last)
  await publish(c, `devices/${last}/readings`, reading(1))
  await waitFor(() => up.stored.size === 16, { timeoutMs: 60_000, what: `all 16 readings stored upstream (have ${up.stored.size})` })

  // drained by the wake, not by the back-off timers: three partitions woken, one request
  // each (four in all), and no further failure
  assert.equal(await metric('gateway_upstream_backoff_woken_total'), 3)
  assert.equal(up.requests, 4)
  assert.equal(await metric('gateway_upstream_retries_total', '{reason="network"}'), failures)
  await waitFor(() => gw.store.items === 0, { what: 'the backlog deleted after the answers' })
})
