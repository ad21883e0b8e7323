/**
 * Fault tests of the PostgreSQL cloud side (issue 10): stateless ingest processes on one
 * database, and exactly once across redundant gateways (the natural key).
 *
 * 1. Three ingest CLIs (--sink postgres) on one throwaway PostgreSQL, a gateway spreading
 *    its partitions over them (--upstream-spread, each URL through a fault proxy so a
 *    restarted ingest keeps its address). Under load, a random ingest is killed -9 and
 *    restarted every ~1.5 s, and once the postmaster itself is killed -9 and restarted
 *    (crash recovery). The ingests answer retry while the database is gone (/readyz 503).
 * 2. Devices whose connection is moved between two gateways every ~2 s (proxy retarget +
 *    every connection dropped: PUBACKs in flight are lost, devices resend to the other
 *    gateway), while both gateways are killed -9 and restarted at random.
 *
 * Each run ends with the device-sim audit through the query API (served from PostgreSQL):
 * every acknowledged reading stored exactly once, in order; one row per stored reading.
 */
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { createSimulation, fetchReadings, runAudit, simConfig, waitForDrain } from '../../device-sim/index.ts'
import { spawnCli, tempDir, waitFor, type Child } from '../helpers/index.ts'
import { FaultProxy, seeded } from '../helpers/fault-proxy.ts'
import { freshDatabase, ownPostgres } from '../helpers/postgres.ts'

const SEED = Number(process.env.FAULT_SEED ?? 20261130)
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
type T = Parameters<typeof tempDir>[0] & { after: (fn: () => unknown) => void, diagnostic: (m: string) => void }
type Sim = ReturnType<typeof createSimulation>

const GW_FLAGS = ['--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--durability', 'process',
  '--linger-ms', '20', '--retry-base-ms', '50', '--retry-max-ms', '400', '--request-timeout-ms', '3000']

async function startDevices (t: T, broker: string, prefix: string, devices: number): Promise<Sim> {
  const sim = createSimulation(simConfig({
    broker, devices, rate: 30, idPrefix: prefix, seed: SEED % 100000, progress: 'off',
    receipts: false, reconnectDelayMs: 100, stopGraceMs: 20_000, inflight: 16
  }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(20_000)
  return sim
}

/** Audits every acknowledged reading through the query API; returns the rows read. */
async function audit (t: T, sim: Sim, ingestUrl: string, gatewayAdmins: string[], note: string): Promise<number> {
  await sim.stop()
  for (const admin of gatewayAdmins) {
    const drain = await waitForDrain({ ingestUrl, gatewayAdmin: admin, timeoutMs: 40_000 })
    assert.equal(drain.settled, true, `gateway ${admin} drained to the ingest`)
  }
  const result = await runAudit(sim.records(), { ingestUrl })
  let rows = 0
  const seen = new Set<string>()
  for (const rec of sim.records()) {
    for (const b of rec.boots) {
      for (const r of await fetchReadings(ingestUrl, rec.id, b.boot)) {
        rows++
        const nat = `${rec.id}:${b.boot}:${r.seq}`
        assert.ok(!seen.has(nat), `reading ${nat} stored twice`)
        seen.add(nat)
      }
    }
  }
  const st = await (await fetch(`${ingestUrl}/v1/stats`)).json() as { stored: number, duplicates: number }
  const a = result.totals
  const c = sim.stats.counters
  t.diagnostic(`seed ${SEED}; ${note}; generated ${c.generated}, acked ${a.acknowledged}, resends ${c.resends}, connection losses ${c.connectionLosses}; ` +
    `rows ${rows} (stored ${st.stored}, duplicate answers ${st.duplicates}); lost ${a.lost}, duplicated ${a.duplicated}, out of order ${a.outOfOrder}`)
  assert.equal(a.lost, 0, `acknowledged readings lost: ${JSON.stringify(result.failures.slice(0, 3).map((f) => [f.id, f.boots.map((b) => b.lostRanges)]))}`)
  assert.equal(a.duplicated, 0, `duplicated: ${JSON.stringify(result.failures.slice(0, 3).map((f) => [f.id, f.boots.map((b) => b.duplicatedSeqs)]))}`)
  assert.equal(a.outOfOrder, 0)
  assert.equal(a.unexpected, 0)
  assert.equal(result.ok, true)
  assert.equal(a.acknowledged, c.acked)
  assert.equal(rows, a.stored, 'each stored reading is one row')
  assert.equal(st.stored, rows, 'the counters match the table')
  return rows
}

test('3 stateless ingests on one PostgreSQL: random ingest kill -9 every ~1.3 s and a postmaster kill -9 mid-load; 0 lost, 0 duplicated', async (t) => {
  const rnd = seeded(SEED)
  const tStart = Date.now()
  const pg = await ownPostgres(t)
  const url = await pg.createDatabase('faults')
  const token = 'pg-fault-secret-'
  const spawnIngest = (): Promise<Child> => spawnCli(t, 'ingest/main.ts', ['--port', '0', '--sink', 'postgres', '--postgres-url', url, '--token', `gw1:${token}`], { readyTimeoutMs: 60_000 })
  const ingests = await Promise.all([spawnIngest(), spawnIngest(), spawnIngest()])
  const proxies = await Promise.all(ingests.map((i) => FaultProxy.start(t, i.ready.port as number)))
  const traffic = proxies.map(() => 0)
  proxies.forEach((px, i) => px.on('data', (dir) => { if (dir === 'up') traffic[i]!++ }))
  const dir = await tempDir(t, 'faults-pg-')
  const gw = await spawnCli(t, 'gateway/main.ts', ['--gateway-id', 'gw1', '--data-dir', join(dir, 'gw'), ...GW_FLAGS,
    '--upstream', proxies.map((p) => `http://${p.url}`).join(','), '--upstream-spread', '--token', token], { readyTimeoutMs: 60_000 })
  const sim = await startDevices(t, `mqtt://127.0.0.1:${String(gw.ready.mqttPort)}`, 'pgk-', 8)
  const setupS = Math.round((Date.now() - tStart) / 1000)
  const ingestUrl = (i: number): string => `http://${proxies[i]!.url}`

  let ingestKills = 0
  let unreadySeen = false
  const t0 = Date.now()
  // A killed ingest restarts in the background (a tsx start takes seconds on a loaded box)
  // while the next kills land; its proxy refuses connections meanwhile (the gateway fails over).
  const restarting = new Map<number, Promise<void>>()
  for (let k = 0; k < 4; k++) {
    await sleep(800 + rnd() * 1000)
    if (k === 1) {
      // The database crashes: every ingest loses its connections mid-commit.
      await pg.kill9()
      const live = [0, 1, 2].find((i) => !restarting.has(i)) ?? 0
      let lastAnswer = ''
      unreadySeen = await waitFor(async () => {
        const r = await fetch(`${ingestUrl(live)}/readyz`).catch((e: Error) => { lastAnswer = `${e.message} (${(e.cause as Error | undefined)?.message ?? ''})`; return null })
        if (r) lastAnswer = String(r.status)
        return r?.status === 503
      }, { timeoutMs: 10_000, what: '/readyz 503 while PostgreSQL is down' }).then(() => true, () => false)
      if (!unreadySeen) t.diagnostic(`ingest ${live}: last /readyz answer ${lastAnswer}; exit ${JSON.stringify(ingests[live]!.proc.exitCode)}; stderr ${ingests[live]!.stderr.slice(-3).join(' | ').slice(0, 600)}`)
      await sleep(rnd() * 800)
      await pg.restart()
      continue
    }
    while (restarting.size >= 2) await Promise.race(restarting.values()) // keep one serving
    const i = [0, 1, 2].filter((j) => !restarting.has(j))[Math.floor(rnd() * (3 - restarting.size))]!
    proxies[i]!.detach() // never dial the port the kill frees
    await ingests[i]!.kill('SIGKILL')
    ingestKills++
    restarting.set(i, spawnIngest().then((c) => { ingests[i] = c; proxies[i]!.retarget(c.ready.port as number); restarting.delete(i) }))
  }
  await Promise.all(restarting.values())
  await waitFor(async () => (await fetch(`${ingestUrl(0)}/readyz`)).status === 200, { timeoutMs: 20_000, what: '/readyz 200 after PostgreSQL restarted' })
  const rows = await audit(t, sim, ingestUrl(0), [`http://127.0.0.1:${String(gw.ready.adminPort)}`],
    `ingest kills ${ingestKills}, postmaster kills 1, requests per ingest ${traffic.join('/')}; setup ${setupS} s, faults ${Math.round((Date.now() - t0) / 1000)} s`)
  // An ingest exits only when the test kills it: one that died by itself crashed (an
  // unheard pg client 'error' after the postmaster kill did this once).
  for (const [i, c] of ingests.entries()) assert.equal(c.proc.exitCode ?? c.proc.signalCode, null, `ingest ${i} crashed: ${c.stderr.slice(-3).join(' | ').slice(0, 600)}`)
  assert.equal(ingestKills, 3)
  assert.ok(unreadySeen, 'the ingests reported unready while the database was down (the crash landed)')
  assert.ok(traffic.every((n) => n > 0), `every ingest served batches (spread): ${traffic.join('/')}`)
  assert.ok(rows >= 1000, `rows ${rows}`)
})

test('a device moving between two gateways every ~2 s, both killed -9 at random: every acked reading stored exactly once', async (t) => {
  const rnd = seeded(SEED + 1)
  const url = await freshDatabase()
  const ingest = await spawnCli(t, 'ingest/main.ts', ['--port', '0', '--sink', 'postgres', '--postgres-url', url, '--token', 'gwA:secret-a-pad-012', '--token', 'gwB:secret-b-pad-012'], { readyTimeoutMs: 60_000 })
  const ingestUrl = `http://127.0.0.1:${String(ingest.ready.port)}`
  const dir = await tempDir(t, 'faults-pg2-')
  const names = ['gwA', 'gwB'] as const
  const spawnGw = (i: number): Promise<Child> => spawnCli(t, 'gateway/main.ts', ['--gateway-id', names[i]!, '--data-dir', join(dir, names[i]!), ...GW_FLAGS,
    '--upstream', ingestUrl, '--token', i === 0 ? 'secret-a-pad-012' : 'secret-b-pad-012'], { readyTimeoutMs: 60_000 })
  const gws = await Promise.all([spawnGw(0), spawnGw(1)])
  const devProxy = await FaultProxy.start(t, gws[0]!.ready.mqttPort as number)
  let current = 0
  const sim = await startDevices(t, `mqtt://${devProxy.url}`, 'mv-', 8)

  let switches = 0
  let kills = 0
  const restarting = new Map<number, Promise<void>>()
  const kill = async (i: number): Promise<void> => {
    if (i === current) devProxy.detach() // never dial the port the kill frees
    await gws[i]!.kill('SIGKILL')
    kills++
    // restarts in the background; devices sent to it meanwhile are refused and retry
    restarting.set(i, spawnGw(i).then((c) => { gws[i] = c; if (i === current) devProxy.retarget(c.ready.mqttPort as number); restarting.delete(i) }))
  }
  for (let k = 0; k < 6; k++) {
    await sleep(800 + rnd() * 1000)
    const i = rnd() < 0.5 ? 0 : 1
    if ((rnd() < 0.35 || (k === 5 && kills === 0)) && !restarting.has(i)) await kill(i)
    // move every device to the other gateway: connections dropped with PUBACKs in flight
    // (if that gateway is still restarting, devices are refused until it is back)
    current = 1 - current
    // a gateway still restarting has no port yet (its old one is free): refuse until it is back
    if (restarting.has(current)) devProxy.detach()
    else devProxy.retarget(gws[current]!.ready.mqttPort as number)
    devProxy.dropAll()
    switches++
  }
  await Promise.all(restarting.values())
  await sleep(800)
  const admins = gws.map((g) => `http://127.0.0.1:${String(g.ready.adminPort)}`)
  await audit(t, sim, ingestUrl, admins, `switches ${switches}, gateway kills ${kills}`)
  const st = await (await fetch(`${ingestUrl}/v1/stats`)).json() as { gateways: Record<string, { stored: number, duplicates: number }> }
  // not luck: both gateways took readings of the moving devices and delivered them. A
  // gateway whose every copy arrived after the other's counts too (answered duplicate by the
  // natural key): on a loaded box one gateway can spend most of the run restarting.
  const delivered = (g: { stored: number, duplicates: number } | undefined): number => (g?.stored ?? 0) + (g?.duplicates ?? 0)
  assert.ok(delivered(st.gateways.gwA) > 0 && delivered(st.gateways.gwB) > 0, `both gateways delivered readings: ${JSON.stringify(st.gateways)}`)
  assert.ok(sim.stats.counters.resends > 0, 'devices resent readings after a switch (copies through the other gateway were possible)')
})
