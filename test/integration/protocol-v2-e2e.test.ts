/**
 * Upstream protocol v2 end to end (docs/protocol-v2.md): the real gateway and ingest CLIs
 * negotiate v2 by themselves, and an ingest swapped between a v1-only build (`--protocols 1`,
 * which answers like an ingest that predates v2) and a v2 one under load loses and
 * duplicates nothing: the simulator's audit checks every acknowledged reading.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { createSimulation, runAudit, simConfig, waitForDrain } from '../../device-sim/index.ts'
import { FaultProxy, promValue } from '../helpers/fault-proxy.ts'
import { spawnCli, tempDir, waitFor, type Child } from '../helpers/index.ts'

const TOKEN = 'v2-secret-pad-01'

async function receivedBytes (ingestUrl: string, version: 1 | 2): Promise<number> {
  const text = await (await fetch(`${ingestUrl}/metrics`)).text()
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('ingest_received_bytes_total{') && line.includes(`version="${version}"`)) sum += Number(line.split(' ').pop())
  }
  return sum
}

test('an ingest switched between v1-only and v2 under load: every acknowledged reading stored exactly once', async (t) => {
  const dir = await tempDir(t, 'v2-e2e-')
  const spawnIngest = (protocols: string): Promise<Child> =>
    spawnCli(t, 'ingest/main.ts', ['--port', '0', '--data-dir', join(dir, 'ingest'), '--token', `gw1:${TOKEN}`, '--protocols', protocols])
  let ingest = await spawnIngest('1')
  const proxy = await FaultProxy.start(t, ingest.ready.port as number)
  const gw = await spawnCli(t, 'gateway/main.ts', [
    '--gateway-id', 'gw1', '--data-dir', join(dir, 'gateway'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0',
    '--upstream', `http://${proxy.url}`, '--token', TOKEN, '--durability', 'process',
    '--linger-ms', '50', '--retry-base-ms', '50', '--retry-max-ms', '300'
  ])
  const ingestUrl = (): string => `http://127.0.0.1:${String(ingest.ready.port)}`
  const adminUrl = `http://127.0.0.1:${String(gw.ready.adminPort)}`
  const sim = createSimulation(simConfig({ broker: `mqtt://127.0.0.1:${String(gw.ready.mqttPort)}`, devices: 10, rate: 40, count: 100_000, idPrefix: 'v2sw-', progress: 'off' }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(15_000)

  const swap = async (protocols: string): Promise<void> => {
    await ingest.kill('SIGTERM')
    ingest = await spawnIngest(protocols)
    proxy.retarget(ingest.ready.port as number)
  }
  // v1-only ingest: the gateway must stay on v1 (nothing arrives on /v2)
  await waitFor(async () => await receivedBytes(ingestUrl(), 1) > 0, { timeoutMs: 15_000, what: 'v1 batches at a v1-only ingest' })
  assert.equal(await receivedBytes(ingestUrl(), 2), 0)
  // upgrade: the gateway moves to v2 by itself
  await swap('1,2')
  await waitFor(async () => await receivedBytes(ingestUrl(), 2) > 0, { timeoutMs: 15_000, what: 'v2 batches after the upgrade' })
  // downgrade mid-stream: the v2 requests get 404, the same items go again as v1
  await swap('1')
  await waitFor(async () => await receivedBytes(ingestUrl(), 1) > 0, { timeoutMs: 15_000, what: 'v1 batches after the downgrade' })
  await swap('1,2')
  await waitFor(async () => await receivedBytes(ingestUrl(), 2) > 0, { timeoutMs: 15_000, what: 'v2 again after the second upgrade' })
  // the load runs until here whatever the box's speed; stop waits for the PUBACKs in flight
  await sim.stop()
  const drain = await waitForDrain({ ingestUrl: ingestUrl(), gatewayAdmin: adminUrl, timeoutMs: 30_000 })
  assert.equal(drain.settled, true, 'gateway drained')
  const fallbacks = gw.lines.filter((l) => l.msg === 'upstream has no protocol v2 endpoint; sending these items again as v1').length
  assert.ok(fallbacks >= 1, 'the downgrade was seen as a 404 on /v2 and answered by a fallback')

  const audit = await runAudit(sim.records(), { ingestUrl: ingestUrl() })
  assert.equal(audit.ok, true, JSON.stringify(audit.failures.slice(0, 3)))
  t.diagnostic(`acknowledged ${audit.totals.acknowledged}, stored ${audit.totals.stored}, lost ${audit.totals.lost}, duplicated ${audit.totals.duplicated}, v1 fallbacks ${fallbacks}`)
  assert.ok(audit.totals.acknowledged >= 400, `acknowledged ${audit.totals.acknowledged}`)
  // stored may exceed acknowledged: readings the gateway took whose PUBACK was still on its way when the simulator hung up
  assert.ok(audit.totals.stored >= audit.totals.acknowledged)
  assert.equal(audit.totals.lost + audit.totals.duplicated + audit.totals.outOfOrder, 0)
  const metrics = await (await fetch(`${adminUrl}/metrics`)).text()
  assert.equal(promValue(metrics, 'gateway_dlq_items'), 0, 'nothing dead-lettered by the switches')
})

test('--upstream-protocol v1 keeps a gateway on v1 against a v2 ingest; v2 bodies are brotli by default', async (t) => {
  const dir = await tempDir(t, 'v2-pin-')
  const ingest = await spawnCli(t, 'ingest/main.ts', ['--port', '0', '--data-dir', join(dir, 'ingest'), '--token', `gw1:${TOKEN}`])
  const ingestUrl = `http://127.0.0.1:${String(ingest.ready.port)}`
  const start = (id: string, extra: string[]): Promise<Child> => spawnCli(t, 'gateway/main.ts', [
    '--gateway-id', 'gw1', '--data-dir', join(dir, id), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0',
    '--upstream', ingestUrl, '--token', TOKEN, '--linger-ms', '50', ...extra
  ])
  const run = async (gw: Child, prefix: string): Promise<void> => {
    const sim = createSimulation(simConfig({ broker: `mqtt://127.0.0.1:${String(gw.ready.mqttPort)}`, devices: 3, rate: 50, count: 40, idPrefix: prefix, progress: 'off' }))
    t.after(() => sim.stop())
    await sim.start()
    await sim.done
    await sim.stop()
    assert.equal((await waitForDrain({ ingestUrl, gatewayAdmin: `http://127.0.0.1:${String(gw.ready.adminPort)}`, timeoutMs: 20_000 })).settled, true)
    const audit = await runAudit(sim.records(), { ingestUrl })
    assert.equal(audit.ok, true, JSON.stringify(audit.failures.slice(0, 3)))
  }
  const pinned = await start('g1', ['--upstream-protocol', 'v1'])
  await run(pinned, 'pin-')
  assert.equal(await receivedBytes(ingestUrl, 2), 0, 'a pinned v1 gateway never sends v2')
  await pinned.kill('SIGTERM')
  const auto = await start('g2', [])
  await run(auto, 'auto-')
  const text = await (await fetch(`${ingestUrl}/metrics`)).text()
  assert.ok(/ingest_received_bytes_total\{encoding="br",version="2"\} [1-9]/.test(text), `brotli v2 bodies arrived:\n${text.split('\n').filter((l) => l.startsWith('ingest_received_bytes')).join('\n')}`)
})
