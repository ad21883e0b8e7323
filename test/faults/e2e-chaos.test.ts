/**
 * Gateway + real ingest (issue 3): readings from many devices reach the ingest exactly once
 * and in (boot, seq) order per device, through a gateway kill -9 while flushing, an ingest
 * kill -9 and restart, and fault injection at 5% each of retry, fail and drop.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { createSimulation, runAudit, simConfig, waitForDrain } from '../../device-sim/index.ts'
import { spawnCli, tempDir, waitFor, type Child } from '../helpers/index.ts'

test('exactly once through gateway kill -9 mid-flush, ingest kill -9, and 5% retry/fail/drop chaos', async (t) => {
  const dir = await tempDir(t, 'e2e-chaos-')
  const token = 'chaos-secret-pad'
  const ingestArgs = (port: number | string): string[] => ['--port', String(port), '--data-dir', join(dir, 'ingest'), '--token', `gw1:${token}`,
    '--chaos-retry-rate', '0.05', '--chaos-fail-rate', '0.05', '--chaos-drop-rate', '0.05', '--chaos-seed', '7']
  let ingest: Child = await spawnCli(t, 'ingest/main.ts', ingestArgs(0))
  const ingestPort = ingest.ready.port as number
  const ingestUrl = `http://127.0.0.1:${ingestPort}`
  const gwArgs = (mqtt: number | string, admin: number | string): string[] => ['--gateway-id', 'gw1', '--data-dir', join(dir, 'gateway'),
    '--mqtt-port', String(mqtt), '--admin-port', String(admin), '--host', '127.0.0.1', '--upstream', ingestUrl, '--token', token,
    '--linger-ms', '50', '--batch-max-items', '100', '--retry-base-ms', '20', '--retry-max-ms', '300', '--durability', 'process']
  let gw: Child = await spawnCli(t, 'gateway/main.ts', gwArgs(0, 0))
  const mqttPort = gw.ready.mqttPort as number
  const adminPort = gw.ready.adminPort as number

  const sim = createSimulation(simConfig({
    broker: `mqtt://127.0.0.1:${mqttPort}`, devices: 40, rate: 25, count: 120, idPrefix: 'chaos-', progress: 'off',
    reconnectDelayMs: 100, receipts: false, stopGraceMs: 10_000
  }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(15_000)

  // gateway kill -9 while it is flushing: wait until the ingest has taken some batches
  const stats = async (): Promise<{ stored: number, duplicates: number }> => await (await fetch(`${ingestUrl}/v1/stats`)).json() as { stored: number, duplicates: number }
  await waitFor(async () => (await stats()).stored > 500, { timeoutMs: 20_000, what: 'ingest storing' })
  await gw.kill('SIGKILL')
  gw = await spawnCli(t, 'gateway/main.ts', gwArgs(mqttPort, adminPort))

  // ingest kill -9 and restart on the same port and data dir
  const mark = (await stats()).stored
  await waitFor(async () => (await stats()).stored > mark + 300, { timeoutMs: 20_000, what: 'flushing after the gateway restart' })
  await ingest.kill('SIGKILL')
  // let the gateway see the ingest gone (its next request fails) before the ingest returns
  await waitFor(async () => {
    const st = await (await fetch(`http://127.0.0.1:${adminPort}/status`)).json() as { upstream: { state: string } }
    return st.upstream.state === 'unreachable' || st.upstream.state === 'retrying'
  }, { timeoutMs: 10_000, what: 'the gateway noticed the ingest gone' })
  ingest = await spawnCli(t, 'ingest/main.ts', ingestArgs(ingestPort))

  await sim.done
  await sim.stop()
  const drain = await waitForDrain({ ingestUrl, gatewayAdmin: `http://127.0.0.1:${adminPort}`, timeoutMs: 40_000 })
  assert.equal(drain.settled, true, 'gateway drained to the ingest')
  const audit = await runAudit(sim.records(), { ingestUrl })
  t.diagnostic(`audit: ${JSON.stringify(audit.totals)}`)
  // before any assertion: what the ingest counted and where the audit found gaps, so a
  // failure says whether readings are missing from the store or from the query pages
  t.diagnostic(`ingest stats: ${JSON.stringify(await stats())}`)
  const gwStatus = await (await fetch(`http://127.0.0.1:${adminPort}/status`)).json() as { dlq: unknown, buffered: unknown }
  t.diagnostic(`gateway: dlq ${JSON.stringify(gwStatus.dlq)}, buffered ${JSON.stringify(gwStatus.buffered)}`)
  for (const f of audit.failures.slice(0, 5)) t.diagnostic(`failed device ${f.id}: ${JSON.stringify(f.boots.map((b) => ({ boot: b.boot, lost: b.lostRanges, duplicated: b.duplicatedSeqs.slice(0, 10) })))}`)
  assert.equal(audit.totals.acknowledged, 40 * 120, 'every reading was eventually acknowledged')
  assert.equal(audit.totals.lost, 0, 'no acknowledged reading lost')
  assert.equal(audit.totals.duplicated, 0, 'no reading stored twice')
  assert.equal(audit.totals.outOfOrder, 0, '(boot, seq) order recoverable')
  assert.ok(audit.ok)
  // the chaos really happened: duplicates answered for resent batches (drop = lost responses)
  const s = await stats()
  assert.ok(s.duplicates > 0, 'lost responses were resent and answered duplicate')
})
