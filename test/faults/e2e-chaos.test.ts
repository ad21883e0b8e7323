/**
 * Gateway + real ingest: readings from many devices reach the ingest exactly once
 * and in (boot, seq) order per device, through a gateway kill -9 while flushing, an ingest
 * kill -9 and restart, and fault injection at 5% each of retry, fail and drop.
 *
 * Every hop goes through a fault proxy whose port the test holds from start to end:
 *
 *   device-sim -> devProxy -> gateway CLI -> upProxy -> ingest CLI
 *
 * Restarting a process on the port it had is not safe: between the kill and the restart
 * the port is free, and whatever binds it meanwhile (another test's server, a Mosquitto)
 * receives the devices' resends or the gateway's batches and can acknowledge them; the
 * audit then finds acknowledged readings lost that neither the gateway nor the ingest ever
 * held. So a restarted process takes a new `listen(0)` port and its proxy is retargeted,
 * and each proxy is detached before its target is killed: it resets new connections
 * instead of dialing the freed port. A stranger then sits on each freed port for the rest
 * of the test, and the test checks that nobody dialed it.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { createSimulation, runAudit, simConfig, waitForDrain } from '../../device-sim/index.ts'
import { spawnCli, tempDir, waitFor, type Child } from '../helpers/index.ts'
import { FaultProxy, squat, type Squatter } from '../helpers/fault-proxy.ts'

test('exactly once through gateway kill -9 mid-flush, ingest kill -9, and 5% retry/fail/drop chaos', async (t) => {
  const dir = await tempDir(t, 'e2e-chaos-')
  const token = 'chaos-secret-pad'
  const spawnIngest = (): Promise<Child> => spawnCli(t, 'ingest/main.ts', ['--port', '0', '--data-dir', join(dir, 'ingest'), '--token', `gw1:${token}`,
    '--chaos-retry-rate', '0.05', '--chaos-fail-rate', '0.05', '--chaos-drop-rate', '0.05', '--chaos-seed', '7'])
  let ingest = await spawnIngest()
  const upProxy = await FaultProxy.start(t, ingest.ready.port as number)
  const spawnGateway = (): Promise<Child> => spawnCli(t, 'gateway/main.ts', ['--gateway-id', 'gw1', '--data-dir', join(dir, 'gateway'),
    '--mqtt-port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--upstream', `http://${upProxy.url}`, '--token', token,
    '--linger-ms', '50', '--batch-max-items', '100', '--retry-base-ms', '20', '--retry-max-ms', '300', '--durability', 'process'])
  let gw = await spawnGateway()
  const devProxy = await FaultProxy.start(t, gw.ready.mqttPort as number)
  // the test reads the live processes directly; devices and the gateway only ever dial the proxies
  const ingestUrl = (): string => `http://127.0.0.1:${String(ingest.ready.port)}`
  const adminUrl = (): string => `http://127.0.0.1:${String(gw.ready.adminPort)}`
  const strangers: Squatter[] = []

  const sim = createSimulation(simConfig({
    broker: `mqtt://${devProxy.url}`, devices: 40, rate: 25, count: 120, idPrefix: 'chaos-', progress: 'off',
    reconnectDelayMs: 100, receipts: false, stopGraceMs: 10_000
  }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(15_000)

  // gateway kill -9 while it is flushing: wait until the ingest has taken some batches
  const stats = async (): Promise<{ stored: number, duplicates: number }> => await (await fetch(`${ingestUrl()}/v1/stats`)).json() as { stored: number, duplicates: number }
  await waitFor(async () => (await stats()).stored > 500, { timeoutMs: 20_000, what: 'ingest storing' })
  devProxy.detach()
  await gw.kill('SIGKILL')
  strangers.push(await squat(t, gw.ready.mqttPort as number))
  gw = await spawnGateway()
  devProxy.retarget(gw.ready.mqttPort as number)

  // ingest kill -9 and restart on the same data dir (and a new port, behind the same proxy)
  const mark = (await stats()).stored
  await waitFor(async () => (await stats()).stored > mark + 300, { timeoutMs: 20_000, what: 'flushing after the gateway restart' })
  upProxy.detach()
  await ingest.kill('SIGKILL')
  strangers.push(await squat(t, ingest.ready.port as number))
  // let the gateway see the ingest gone (its next request fails) before the ingest returns
  await waitFor(async () => {
    const st = await (await fetch(`${adminUrl()}/status`)).json() as { upstream: { state: string } }
    return st.upstream.state === 'unreachable' || st.upstream.state === 'retrying'
  }, { timeoutMs: 10_000, what: 'the gateway noticed the ingest gone' })
  ingest = await spawnIngest()
  upProxy.retarget(ingest.ready.port as number)

  await sim.done
  await sim.stop()
  const drain = await waitForDrain({ ingestUrl: ingestUrl(), gatewayAdmin: adminUrl(), timeoutMs: 40_000 })
  assert.equal(drain.settled, true, 'gateway drained to the ingest')
  const audit = await runAudit(sim.records(), { ingestUrl: ingestUrl() })
  t.diagnostic(`audit: ${JSON.stringify(audit.totals)}`)
  // before any assertion: what the ingest counted and where the audit found gaps, so a
  // failure says whether readings are missing from the store or from the query pages
  t.diagnostic(`ingest stats: ${JSON.stringify(await stats())}`)
  const gwStatus = await (await fetch(`${adminUrl()}/status`)).json() as { dlq: unknown, buffered: unknown }
  t.diagnostic(`gateway: dlq ${JSON.stringify(gwStatus.dlq)}, buffered ${JSON.stringify(gwStatus.buffered)}`)
  t.diagnostic(`proxies: devices ${devProxy.stats.accepted} connections (${devProxy.stats.resets} reset while detached), gateway -> ingest ${upProxy.stats.accepted} (${upProxy.stats.resets} reset)`)
  for (const f of audit.failures.slice(0, 5)) t.diagnostic(`failed device ${f.id}: ${JSON.stringify(f.boots.map((b) => ({ boot: b.boot, lost: b.lostRanges, duplicated: b.duplicatedSeqs.slice(0, 10) })))}`)
  // nobody dialed a freed port: what the devices and the gateway sent went to the test's proxies only
  for (const s of strangers) assert.equal(s.accepted(), 0, `a connection reached the freed port ${s.port}`)
  assert.equal(audit.totals.acknowledged, 40 * 120, 'every reading was eventually acknowledged')
  assert.equal(audit.totals.lost, 0, 'no acknowledged reading lost')
  assert.equal(audit.totals.duplicated, 0, 'no reading stored twice')
  assert.equal(audit.totals.outOfOrder, 0, '(boot, seq) order recoverable')
  assert.ok(audit.ok)
  // the chaos really happened: duplicates answered for resent batches (drop = lost responses)
  const s = await stats()
  assert.ok(s.duplicates > 0, 'lost responses were resent and answered duplicate')
  // and the peers really tried while their target was down (the detach was exercised, not luck)
  assert.ok(devProxy.stats.resets + upProxy.stats.resets > 0, 'a peer dialed a proxy while its target was dead, and was reset')
})
