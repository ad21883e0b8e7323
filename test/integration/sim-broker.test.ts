import assert from 'node:assert/strict'
import { test } from 'node:test'
import { auditDevice, createSimulation, simConfig, summarize, type Simulation } from '../../device-sim/index.ts'
import { waitFor } from '../helpers/index.ts'
import { startTestBroker, type TestBroker } from './sim-fixtures.ts'

function auditAgainst (sim: Simulation, b: TestBroker): ReturnType<typeof summarize> {
  return summarize(sim.records().map((r) => auditDevice(r, b.rows(r.id))))
}

test('every reading sent is acknowledged and stored exactly once; receipts give latency', async (t) => {
  const b = await startTestBroker(t, { receipts: true })
  // clean sessions (no commands): stock Aedes (this in-test broker) drops about half of the
  // QoS 0 receipts it publishes to persistent (clean=false) sessions, which a device with
  // commands keeps; commands have their own test (sim-commands.test.ts)
  const sim = createSimulation(simConfig({ broker: b.url, devices: 20, rate: 20, count: 30, idPrefix: 'it-a-', progress: 'off', commands: false }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(10_000)
  await sim.done
  await waitFor(() => sim.snapshot().acked === 600, { timeoutMs: 10_000, what: 'all acked' })
  // receipts are published after the upload, best effort: give the last ones time to arrive
  await waitFor(() => sim.stats.counters.receipts >= 600 - 20, { timeoutMs: 10_000, what: 'receipts for (nearly) every reading' })
  await sim.stop()
  const snap = sim.snapshot()
  assert.equal(snap.generated, 600)
  assert.equal(snap.acked, 600)
  assert.equal(snap.unacked, 0)
  assert.equal(b.stored(), 600)
  assert.equal(b.duplicates(), 0)
  const audit = auditAgainst(sim, b)
  assert.equal(audit.ok, true)
  assert.equal(audit.totals.acknowledged, 600)
  assert.equal(audit.totals.stored, 600)
  assert.equal(audit.totals.lost + audit.totals.duplicated + audit.totals.unackedLost, 0)
  // ids, seqs and boots as designed: one boot per device, seq 1..30
  const rec = sim.records()[0]!
  assert.equal(rec.id, 'it-a-0000')
  assert.equal(rec.boots.length, 1)
  assert.deepEqual(rec.boots[0]!.acked.ranges(), [[1, 30]])
  assert.ok(sim.stats.counters.receipts >= 600 - 20)
  assert.ok(sim.stats.receiptMs.count > 0, 'confirmation latency measured')
  const report = sim.report()
  assert.equal(report.devices.length, 20)
  assert.equal(report.totals.acknowledged, 600)
  assert.equal(report.devices[0]!.boots[0]!.confirmedUpTo, 30)
})

test('a dropped connection is resumed: unacked readings are resent and nothing is lost', async (t) => {
  const b = await startTestBroker(t, { delayMs: 30 })
  const sim = createSimulation(simConfig({ broker: b.url, devices: 5, rate: 50, count: 100, idPrefix: 'it-b-', reconnectDelayMs: 20, progress: 'off', payload: 'json' }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(10_000)
  // kick every device a few times while readings are in flight (PUBACKs held 30 ms)
  for (let round = 0; round < 3; round++) {
    await waitFor(() => sim.stats.counters.connects >= 5 * (round + 1) && sim.devices.every((d) => d.state === 'online' && d.inFlight > 0), { timeoutMs: 5000, what: 'devices (re)connected with readings in flight' })
    for (const d of sim.devices) assert.ok(b.kick(d.id))
  }
  await sim.done
  await waitFor(() => sim.snapshot().acked === 500, { timeoutMs: 15_000, what: 'all acked after reconnects' })
  await sim.stop()
  const c = sim.stats.counters
  assert.ok(c.connectionLosses >= 15, `connection losses ${c.connectionLosses}`)
  assert.ok(c.resends > 0, 'unacked readings were resent')
  const audit = auditAgainst(sim, b)
  assert.equal(audit.ok, true)
  assert.equal(audit.totals.acknowledged, 500)
  assert.equal(audit.totals.stored, 500)
  assert.equal(audit.totals.unackedLost, 0)
})

test('churn with reboots: unacknowledged losses are allowed and counted apart from failures', async (t) => {
  const b = await startTestBroker(t, { delayMs: 40, dropIfDisconnected: true })
  const sim = createSimulation(simConfig({ broker: b.url, devices: 20, rate: 50, duration: 3, idPrefix: 'it-c-', churn: 0.5, rebootRatio: 0.6, reconnectDelayMs: 20, stopGraceMs: 2000, progress: 'off', seed: 7 }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.done
  await sim.stop()
  const c = sim.stats.counters
  assert.ok(c.reboots > 0, 'reboots happened')
  assert.ok(c.droppedOnReboot > 0, 'reboots dropped unacked readings')
  const multiBoot = sim.records().filter((r) => r.boots.length > 1)
  assert.ok(multiBoot.length > 0)
  // a new boot restarts seq at 1 with a larger boot id
  const r = multiBoot[0]!
  assert.ok(r.boots[1]!.boot > r.boots[0]!.boot)
  assert.equal(r.boots[0]!.endedBy, 'reboot')
  const audit = auditAgainst(sim, b)
  assert.equal(audit.totals.lost, 0)
  assert.equal(audit.totals.duplicated, 0)
  assert.ok(audit.totals.unackedLost > 0, 'never-acknowledged readings lost on reboot are reported')
  assert.equal(audit.ok, true, 'allowed losses do not fail the audit')
  assert.equal(audit.totals.acknowledged, c.acked)
  // and if the "gateway" had lost an acknowledged reading, the same audit fails
  const victim = sim.records().find((x) => x.boots[0]!.acked.size > 2)!
  const rows = b.rows(victim.id).filter((row) => !(String(row.boot) === String(victim.boots[0]!.boot) && row.seq === 2))
  assert.equal(auditDevice(victim, rows).lost, 1)
  assert.equal(auditDevice(victim, rows).ok, false)
})
