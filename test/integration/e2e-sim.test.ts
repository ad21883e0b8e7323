/**
 * device-sim against the real gateway and ingest CLIs (docs/design.md section 9 contracts):
 * a clean run audits clean; churn and reboots separate never-acknowledged losses (allowed)
 * from acknowledged ones; a record deleted or duplicated on the ingest side is caught; and
 * `npm start -- --duration 15` exits 0 with a clean audit.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { createSimulation, runAudit, simConfig, waitForDrain, type SimConfig } from '../../device-sim/index.ts'
import { ROOT, spawnCli, tempDir, waitFor } from '../helpers/index.ts'

type Stack = { ingestUrl: string, brokerUrl: string, adminUrl: string }

async function startStack (t: Parameters<typeof tempDir>[0] & { after: (fn: () => unknown) => void }): Promise<Stack> {
  const dir = await tempDir(t, 'e2e-sim-')
  const token = 'e2e-secret-' + Math.random().toString(36).slice(2)
  const ingest = await spawnCli(t, 'ingest/main.ts', ['--port', '0', '--data-dir', join(dir, 'ingest'), '--token', `gw1:${token}`])
  const ingestUrl = `http://127.0.0.1:${String(ingest.ready.port)}`
  const gw = await spawnCli(t, 'gateway/main.ts', ['--gateway-id', 'gw1', '--data-dir', join(dir, 'gateway'), '--mqtt-port', '0', '--admin-port', '0', '--upstream', ingestUrl, '--token', token, '--linger-ms', '200', '--host', '127.0.0.1'])
  return { ingestUrl, brokerUrl: `mqtt://127.0.0.1:${String(gw.ready.mqttPort)}`, adminUrl: `http://127.0.0.1:${String(gw.ready.adminPort)}` }
}

async function runSim (t: { after: (fn: () => unknown) => void }, s: Stack, cfg: Partial<SimConfig>, during?: (sim: ReturnType<typeof createSimulation>) => Promise<void>) {
  const sim = createSimulation(simConfig({ broker: s.brokerUrl, progress: 'off', ...cfg }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(15_000)
  if (during) await during(sim)
  await sim.done
  await sim.stop()
  const drain = await waitForDrain({ ingestUrl: s.ingestUrl, gatewayAdmin: s.adminUrl, timeoutMs: 20_000 })
  assert.equal(drain.settled, true, 'gateway drained')
  return sim
}

test('e2e: every acknowledged reading is stored exactly once; tampering on the ingest side is caught', async (t) => {
  const s = await startStack(t)
  const sim = await runSim(t, s, { devices: 20, rate: 10, count: 30, idPrefix: 'e2e-clean-' })
  assert.equal(sim.stats.counters.acked, 600)
  const audit = await runAudit(sim.records(), { ingestUrl: s.ingestUrl, limit: 7 }) // small pages: cursors
  assert.equal(audit.ok, true, JSON.stringify(audit.failures.slice(0, 2)))
  assert.equal(audit.totals.acknowledged, 600)
  assert.equal(audit.totals.stored, 600)
  assert.equal(audit.totals.lost + audit.totals.duplicated + audit.totals.outOfOrder + audit.totals.unackedLost, 0)

  // the same ingest data with one reading deleted and one duplicated in the fetched path
  const victim = sim.records()[3]!.id
  const tamper: typeof fetch = async (input, init) => {
    const res = await fetch(input, init)
    const url = String(input)
    if (!url.includes(`/devices/${victim}/readings`)) return res
    const body = await res.json() as { readings: { seq: number }[], next: unknown }
    body.readings = body.readings.flatMap((r) => r.seq === 5 ? [] : r.seq === 9 ? [r, r] : [r])
    return new Response(JSON.stringify(body), { status: 200, headers: { 'content-type': 'application/json' } })
  }
  const bad = await runAudit(sim.records(), { ingestUrl: s.ingestUrl, fetch: tamper })
  assert.equal(bad.ok, false)
  assert.equal(bad.totals.lost, 1)
  assert.equal(bad.totals.duplicated, 1)
  assert.deepEqual(bad.failures.map((f) => f.id), [victim])
  assert.deepEqual(bad.failures[0]!.boots[0]!.lostRanges, [[5, 5]])
})

test('e2e: churn and reboots lose only never-acknowledged readings, reported apart', async (t) => {
  const s = await startStack(t)
  let rebooted: { id: string, boot: number, offline: number } | undefined
  const sim = await runSim(t, s, { devices: 20, rate: 20, duration: 5, churn: 0.2, rebootRatio: 0.5, reconnectDelayMs: 1000, idPrefix: 'e2e-churn-', seed: 3 }, async (sim) => {
    // deterministic allowed loss: a device loses its network, samples 3 readings it cannot
    // publish, then reboots (random churn may hit the same device first: try another)
    for (const d of sim.devices.slice(0, 5)) {
      await waitFor(() => d.state === 'online', { timeoutMs: 5000, what: 'device online' })
      const boot = d.record.boots.at(-1)!
      d.dropConnection()
      await waitFor(() => d.state !== 'online', { timeoutMs: 2000, what: 'connection dropped' })
      const g0 = boot.generated
      const ok = await waitFor(() => d.record.boots.at(-1) !== boot || d.state === 'online' || boot.generated >= g0 + 3 ? true : null, { timeoutMs: 3000 })
      if (ok && d.record.boots.at(-1) === boot && d.state !== 'online' && boot.generated >= g0 + 3) {
        d.reboot()
        rebooted = { id: d.id, boot: boot.boot, offline: boot.generated - g0 }
        break
      }
    }
  })
  assert.ok(rebooted, 'a device rebooted while offline with readings queued')
  const c = sim.stats.counters
  assert.ok(c.reboots >= 1 && c.droppedOnReboot >= 3, `reboots ${c.reboots}, dropped ${c.droppedOnReboot}`)
  assert.ok(c.connectionLosses + c.churnDisconnects > 0)
  const audit = await runAudit(sim.records(), { ingestUrl: s.ingestUrl })
  assert.equal(audit.totals.lost, 0, JSON.stringify(audit.failures.slice(0, 2)))
  assert.equal(audit.totals.duplicated, 0)
  assert.ok(audit.totals.unackedLost >= rebooted.offline, 'readings dropped by the reboot are counted as unacked lost')
  assert.equal(audit.totals.acknowledged, c.acked)
  assert.equal(audit.totals.acknowledged + audit.totals.unackedLost + audit.totals.unackedStored, c.generated)
  assert.equal(audit.ok, true)
  const d0 = audit.perDevice.find((d) => d.id === rebooted!.id)!
  assert.ok(d0.boots.length >= 2)
  const b0 = d0.boots.find((b) => b.boot === rebooted!.boot)!
  assert.ok(b0.unackedLost >= rebooted.offline && rebooted.offline >= 3, `boot ${b0.boot}: unacked lost ${b0.unackedLost}, sampled offline ${rebooted.offline}`)
  assert.equal(b0.lost, 0)
})

test('e2e: npm start -- --duration 15 runs the whole path and exits 0 with a clean audit', async (t) => {
  const dir = await tempDir(t, 'e2e-start-')
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/start.ts'), '--duration', '15', '--data-dir', dir, '--progress', 'line'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  proc.stderr.on('data', (b: Buffer) => { err += b.toString() })
  proc.stdout.resume()
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)))
  t.after(() => { if (proc.exitCode === null) proc.kill('SIGKILL') })
  const code = await exited
  assert.equal(code, 0, err.slice(-2000))
  assert.match(err, /audit: PASS/)
  assert.match(err, /page {4}http:\/\/127\.0\.0\.1:\d+\/ {2}\(ingest http:\/\/127\.0\.0\.1:\d+\/\)/, 'the live view names the operator page (issue 12)')
  // the simulator's words (generated readings, published packets), not "sent"
  const m = /generated (\d+), published (\d+), acknowledged (\d+), stored upstream (\d+), lost (\d+), duplicated (\d+)/.exec(err)
  assert.ok(m, 'summary line printed')
  assert.ok(Number(m[3]) >= 100 * 14, `acknowledged ${m[3]}`)
  assert.equal(Number(m[5]), 0)
  assert.equal(Number(m[6]), 0)
  // the ingest's counts in the view are this run's
  assert.match(err, /ingest {2}this run: stored \d+/)
})
