/**
 * kill -9 loops under load (issue 5; docs/design.md section 10 invariants 1-4).
 *
 * Topology, every hop through a fault proxy so a restarted process (new listen(0) port)
 * keeps its address and faults can be injected between processes. A proxy is detached
 * before its target is killed, so it never dials the freed port: whatever binds that port
 * meanwhile would get the devices' resends and could acknowledge them. A stranger sits on
 * every freed port until the end, and `finish` checks that nobody dialed one.
 *
 *   device-sim (20 devices, QoS 1, resend unacked after reconnect)
 *     -> devProxy -> gateway CLI (durability=process) -> upProxy -> ingest CLI (leveldb)
 *
 * Kill points are chosen by a seeded PRNG (FAULT_SEED, default below; printed): random
 * moments under load, "mid-flush" (the ingest received a batch and committed it, its answer
 * is held back in upProxy, then the gateway dies: a lost HTTP response), "mid-burst" (devices
 * are resending their backlog to a freshly restarted gateway), ingest kills at the moment a
 * batch arrives (mid-commit), answers cut mid-frame by the proxy. After each run the
 * device-sim audit reads every (device, boot) back from the ingest's query API: every
 * acknowledged reading stored exactly once, in order; (epoch, p, s) never names two readings.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { createSimulation, fetchReadings, runAudit, simConfig, waitForDrain, type AuditResult } from '../../device-sim/index.ts'
import { spawnCli, tempDir, waitFor, type Child } from '../helpers/index.ts'
import { FaultProxy, seeded, squat, type Squatter } from '../helpers/fault-proxy.ts'

const SEED = Number(process.env.FAULT_SEED ?? 20240605)
const TOKEN = 'kill-loop-secret'

type T = Parameters<typeof tempDir>[0] & { after: (fn: () => unknown) => void, diagnostic: (m: string) => void }

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

class Stack {
  gw!: Child
  ingest!: Child
  devProxy!: FaultProxy
  upProxy!: FaultProxy
  gwKills = 0
  ingestKills = 0
  readonly strangers: Squatter[] = []
  private constructor (private readonly t: T, private readonly dir: string) {}

  static async start (t: T, name: string): Promise<Stack> {
    const s = new Stack(t, await tempDir(t, `faults-${name}-`))
    s.ingest = await s.spawnIngest()
    s.upProxy = await FaultProxy.start(t, s.ingest.ready.port as number)
    s.gw = await s.spawnGateway()
    s.devProxy = await FaultProxy.start(t, s.gw.ready.mqttPort as number)
    return s
  }

  get ingestUrl (): string { return `http://127.0.0.1:${String(this.ingest.ready.port)}` }
  get adminUrl (): string { return `http://127.0.0.1:${String(this.gw.ready.adminPort)}` }
  get brokerUrl (): string { return `mqtt://${this.devProxy.url}` }

  private spawnIngest (): Promise<Child> {
    return spawnCli(this.t, 'ingest/main.ts', ['--port', '0', '--data-dir', join(this.dir, 'ingest'), '--token', `gw1:${TOKEN}`])
  }

  private spawnGateway (): Promise<Child> {
    return spawnCli(this.t, 'gateway/main.ts', [
      '--gateway-id', 'gw1', '--data-dir', join(this.dir, 'gateway'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0',
      '--upstream', `http://${this.upProxy.url}`, '--token', TOKEN, '--durability', 'process',
      '--linger-ms', '20', '--retry-base-ms', '50', '--retry-max-ms', '400', '--request-timeout-ms', '3000'
    ])
  }

  async killGateway (): Promise<void> {
    this.devProxy.detach()
    await this.gw.kill('SIGKILL')
    this.gwKills++
    this.strangers.push(await squat(this.t, this.gw.ready.mqttPort as number))
  }

  async restartGateway (): Promise<void> {
    this.gw = await this.spawnGateway()
    this.devProxy.retarget(this.gw.ready.mqttPort as number)
  }

  async killIngest (): Promise<void> {
    this.upProxy.detach()
    await this.ingest.kill('SIGKILL')
    this.ingestKills++
    this.strangers.push(await squat(this.t, this.ingest.ready.port as number))
  }

  async restartIngest (): Promise<void> {
    this.ingest = await this.spawnIngest()
    this.upProxy.retarget(this.ingest.ready.port as number)
  }

  /** Resolves once the next request chunk leaves for the ingest (or after timeoutMs). */
  nextBatch (timeoutMs = 5000): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.upProxy.off('data', on); resolve(false) }, timeoutMs)
      const on = (dir: string): void => {
        if (dir !== 'up') return
        clearTimeout(timer)
        this.upProxy.off('data', on)
        resolve(true)
      }
      this.upProxy.on('data', on)
    })
  }

  async stats (): Promise<{ stored: number, duplicates: number, rejected: number, evicted: number }> {
    return await (await fetch(`${this.ingestUrl}/v1/stats`)).json() as { stored: number, duplicates: number, rejected: number, evicted: number }
  }
}

type Sim = ReturnType<typeof createSimulation>

async function startDevices (t: T, s: Stack, prefix: string): Promise<Sim> {
  const sim = createSimulation(simConfig({
    broker: s.brokerUrl, devices: 20, rate: 60, idPrefix: prefix, seed: SEED % 100000, progress: 'off',
    receipts: false, reconnectDelayMs: 100, stopGraceMs: 15_000, inflight: 16
  }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(15_000)
  return sim
}

/** Stops the devices (waiting for their last PUBACKs), drains the gateway and audits. */
async function finish (t: T, s: Stack, sim: Sim, startedAt: number): Promise<AuditResult> {
  await sim.stop()
  const drain = await waitForDrain({ ingestUrl: s.ingestUrl, gatewayAdmin: s.adminUrl, timeoutMs: 30_000 })
  assert.equal(drain.settled, true, 'the gateway drained to the ingest')
  const audit = await runAudit(sim.records(), { ingestUrl: s.ingestUrl })
  // (epoch, p, s) names one reading forever: no seq reused within an epoch (invariant 3)
  const ids = new Map<string, string>()
  let rows = 0
  for (const rec of sim.records()) {
    for (const b of rec.boots) {
      for (const r of await fetchReadings(s.ingestUrl, rec.id, b.boot)) {
        rows++
        const id = `${r.epoch}:${r.p}:${r.s}`
        const who = `${rec.id}:${b.boot}:${r.seq}`
        assert.ok(!ids.has(id) || ids.get(id) === who, `(epoch, p, s) ${id} names ${ids.get(id)} and ${who}`)
        ids.set(id, who)
      }
    }
  }
  const st = await s.stats()
  const c = sim.stats.counters
  const a = audit.totals
  t.diagnostic(`seed ${SEED}; gateway kills ${s.gwKills}, ingest kills ${s.ingestKills}; generated ${c.generated}, acked ${a.acknowledged}, resends ${c.resends}, connection losses ${c.connectionLosses}; ` +
    `ingest rows ${rows} (stored ${st.stored}, duplicate answers ${st.duplicates}); lost ${a.lost}, duplicated ${a.duplicated}, out of order ${a.outOfOrder}, unacked stored ${a.unackedStored}, unacked lost ${a.unackedLost}; ${Math.round((Date.now() - startedAt) / 100) / 10} s`)
  for (const x of s.strangers) assert.equal(x.accepted(), 0, `a connection reached the freed port ${x.port}`)
  assert.equal(a.lost, 0, `acknowledged readings lost: ${JSON.stringify(audit.failures.slice(0, 3).map((f) => [f.id, f.boots.map((b) => b.lostRanges)]))}`)
  assert.equal(a.duplicated, 0, `duplicated: ${JSON.stringify(audit.failures.slice(0, 3).map((f) => [f.id, f.boots.map((b) => b.duplicatedSeqs)]))}`)
  assert.equal(a.outOfOrder, 0)
  assert.equal(a.unexpected, 0)
  assert.equal(audit.ok, true)
  assert.equal(a.acknowledged, c.acked)
  assert.equal(rows, a.stored, 'each stored reading is one row')
  assert.equal(st.stored, rows, 'the ingest stored each reading once (no second copy anywhere)')
  return audit
}

test('gateway kill -9 loop: 6 kills (random, mid-flush with the answer in flight, mid-burst); every acked reading stored exactly once', async (t) => {
  const t0 = Date.now()
  const rnd = seeded(SEED)
  const s = await Stack.start(t, 'gwk9')
  const sim = await startDevices(t, s, 'k9g-')
  const kinds = ['random', 'mid-flush', 'mid-burst', 'random', 'mid-flush', 'mid-burst'] as const
  let midFlushHits = 0
  for (const kind of kinds) {
    await sleep(300 + rnd() * 900) // load runs
    if (kind === 'mid-flush') {
      // the ingest's answer is held; kill once the ingest had time to commit the batch
      s.upProxy.delay(1000, 'down')
      if (await s.nextBatch()) midFlushHits++
      await sleep(150 + rnd() * 100)
    } else if (kind === 'mid-burst') {
      // right after a restart the devices resend what was not acknowledged
      await waitFor(() => sim.snapshot().inFlight >= 20, { timeoutMs: 5000, what: 'devices mid-burst' }).catch(() => {})
    }
    await s.killGateway()
    s.upProxy.heal()
    await sleep(rnd() * 300) // devices keep producing into their queues while it is down
    await s.restartGateway()
  }
  await sleep(1000)
  const before = await s.stats()
  await finish(t, s, sim, t0)
  assert.equal(s.gwKills, 6)
  assert.ok(midFlushHits >= 1, 'at least one kill landed with a batch at the ingest and its answer not delivered')
  assert.ok(sim.stats.counters.acked >= 5000, `acked ${sim.stats.counters.acked}`)
  void before
})

test('ingest kill -9 loop with cut answers: 5 kills at batch arrival or at random; nothing lost, nothing twice', async (t) => {
  const t0 = Date.now()
  const rnd = seeded(SEED + 1)
  const s = await Stack.start(t, 'ink9')
  const sim = await startDevices(t, s, 'k9i-')
  let cuts = 0
  for (let k = 0; k < 5; k++) {
    await sleep(300 + rnd() * 900)
    if (rnd() < 0.6) {
      // a response cut after 20 bytes: committed upstream, the gateway sees a broken answer
      const cut = s.upProxy.cutNext({ dir: 'down', bytes: 20 })
      await Promise.race([cut.then(() => { cuts++ }), sleep(3000)])
      s.upProxy.cancelCuts()
    }
    // kill the ingest the moment a batch reaches it (mid-commit), or at a random moment
    if (k % 2 === 0) { await s.nextBatch(); await sleep(rnd() * 20) }
    await s.killIngest()
    await sleep(rnd() * 500) // the gateway retries against a dead port meanwhile
    await s.restartIngest()
  }
  await sleep(800)
  const audit = await finish(t, s, sim, t0)
  t.diagnostic(`answers cut mid-frame: ${cuts}`)
  assert.equal(s.ingestKills, 5)
  assert.ok(cuts >= 1, 'at least one answer was cut mid-frame')
  const st = await s.stats()
  assert.ok(st.duplicates >= 1, 'a resend after a lost answer was answered duplicate (the ingest dedups, not luck)')
  assert.ok(audit.totals.acknowledged >= 5000)
})

test('gateway and ingest kill -9 together and apart (8 kills, seeded); every acked reading stored exactly once', async (t) => {
  const t0 = Date.now()
  const rnd = seeded(SEED + 2)
  const s = await Stack.start(t, 'bothk9')
  const sim = await startDevices(t, s, 'k9b-')
  for (let k = 0; k < 4; k++) {
    await sleep(300 + rnd() * 800)
    const which = k === 0 ? 'both' : rnd() < 0.34 ? 'gateway' : rnd() < 0.5 ? 'ingest' : 'both'
    if (which !== 'ingest') s.upProxy.delay(800, 'down')
    await s.nextBatch(3000)
    await sleep(rnd() * 100)
    await Promise.all([which !== 'ingest' ? s.killGateway() : null, which !== 'gateway' ? s.killIngest() : null])
    s.upProxy.heal()
    await Promise.all([which !== 'ingest' ? s.restartGateway() : null, which !== 'gateway' ? s.restartIngest() : null])
    // also restarting them in the other order: the gateway comes back before the ingest
  }
  while (s.gwKills + s.ingestKills < 8) {
    await sleep(300 + rnd() * 600)
    if (s.gwKills <= s.ingestKills) { await s.killGateway(); await s.restartGateway() } else { await s.killIngest(); await s.restartIngest() }
  }
  await sleep(800)
  await finish(t, s, sim, t0)
  assert.equal(s.gwKills + s.ingestKills, 8, `8 kills in all (gateway ${s.gwKills}, ingest ${s.ingestKills})`)
  assert.ok(s.gwKills >= 2 && s.ingestKills >= 2, `both were killed more than once: gateway kills ${s.gwKills}, ingest kills ${s.ingestKills}`)
})
