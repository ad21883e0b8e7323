/**
 * The deterministic simulation of the acknowledgment path (test/sim/), in the spirit of
 * Vector's disk-buffer model tests, FoundationDB's simulation and TigerBeetle's VOPR: one
 * seed drives device publishes and resends, the upstream's answers and crash points, and
 * an oracle checks every acknowledged reading after every step.
 *
 * How it is built, and why:
 * - The real code runs: `Store` (gateway/store/), `Intake.handle` (with fake client
 *   objects: it needs only an object to hang its per-client queue on), the real
 *   `Deliverer` (answers, bisecting, dead letters, deletes) and, for MQTT upstreams, the
 *   real `MqttUpstream` over a model broker client. The flusher's partition loop is
 *   replaced by the simulation starting a delivery (it only adds linger and backoff timers).
 * - The store runs on an in-memory database (test/sim/mem-db.ts) whose every read and
 *   write completes only when the seed says so: the store's write cycle, the intake's
 *   window loads and the flusher's reads interleave at every await, as they do on a disk.
 * - A crash can come between any two completions: every in-memory object is dropped, the
 *   held operations never complete (a write under way lands or not, by the seed), and the
 *   gateway restarts on exactly what was written. `gateway check`'s checker runs on it.
 * - No real time: Date.now is the simulation's clock and setTimeout/setInterval are
 *   node:test mock timers, so a seed replays exactly and nothing sleeps.
 * - Options per seed (test/sim/world.ts `optionsFor`): one or two gateways (the ingest then
 *   dedups on device, boot, seq), upstream HTTP / MQTT broker ack / MQTT results, full
 *   policy block / drop-oldest, ack mode persisted / delivered, idle-window sweeps and
 *   clock jumps past the idle time, dead letters (invalid payloads, rejected and poison
 *   items, the dead-letter replay), MQTT PUBACK 0x10, store write failures (the store reopens), protocol v1 / v2,
 *   1-3 partitions, durability power / process, the intake's overload admission holding readings.
 * - The oracle (test/sim/oracle.ts): a PUBACK only for a reading durable somewhere (the
 *   gateway's disk, the ingest, a dead letter, an evicted range); an acknowledged reading
 *   never leaves all of them; a dedup window on disk claims only seqs whose items were
 *   written; with one gateway and no idle forgetting, nothing stored upstream twice; after
 *   the faults stop and everything drains, every acknowledged reading stored exactly once,
 *   dead-lettered or evicted.
 *
 * Found so far, each failing on the code before its fix: a dedup window written ahead of
 * its reading (lost on a resend after a crash); the floor of an emptied partition left
 * behind by out-of-order deletes (a delivered-mode PUBACK that never came); readings
 * blocked for room behind a failed write never admitted again; a delivered-mode
 * duplicate waiting for a seq only a failed write had allocated.
 *
 * SIM_SEEDS (default 2000) seeds from SIM_BASE (default 1), stopping early after
 * SIM_BUDGET_S (default 50) seconds on a slow box; SIM_SEED=N runs one seed (a failing
 * seed prints this command). Long runs: `npm run sim:ack -- --minutes 10`.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { DedupWindow } from '../../gateway/store/index.ts'
import { encodeItemFast } from '../../protocol/index.ts'
import { KNOWN_FAILURES, knownFailure } from '../sim/known.ts'
import { Ledger } from '../sim/oracle.ts'
import { replayCommand, simulate } from '../sim/world.ts'

const one = process.env.SIM_SEED === undefined ? null : Number(process.env.SIM_SEED)

test('acknowledgment-path simulation: every acknowledged reading accounted for', async (t) => {
  const base = one ?? Number(process.env.SIM_BASE ?? 1)
  const seeds = one === null ? Number(process.env.SIM_SEEDS ?? 2000) : 1
  // a loaded CI box runs fewer of them rather than past a minute (always a prefix: each seed replays)
  const budgetMs = Number(process.env.SIM_BUDGET_S ?? 50) * 1000
  t.diagnostic(`base seed ${base}, up to ${seeds} seeds or ${budgetMs / 1000} s (SIM_BASE, SIM_SEEDS, SIM_BUDGET_S)`)
  const t0 = performance.now()
  const expected = new Map<string, number>()
  let acked = 0
  let ran = 0
  for (let s = base; s < base + seeds && performance.now() - t0 < budgetMs; s++, ran++) {
    const r = await simulate(s)
    acked += r.acked
    if (r.violation) {
      const known = knownFailure(r.options)
      if (known) { expected.set(known.name, (expected.get(known.name) ?? 0) + 1); continue }
      assert.fail(`seed ${s}: ${r.violation}\noptions ${JSON.stringify(r.options)}\nreplay: SIM_SEED=${s} node --import tsx --test test/unit/ack-path-sim.test.ts\n    or: ${replayCommand(s)} (SIM_TRACE=1 prints every event)`)
    }
  }
  const secs = (performance.now() - t0) / 1000
  t.diagnostic(`${ran} seeds (${base}..${base + ran - 1}) in ${secs.toFixed(1)} s (${(ran / secs).toFixed(0)} seeds/s), ${acked} readings acknowledged; known to fail: ${[...expected].map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`)
  assert.ok(ran >= Math.min(seeds, 200), `only ${ran} seeds ran within the budget`)
  if (one !== null || ran < 500) return
  // a known failure that no longer fails has been fixed: its entry must go
  for (const k of KNOWN_FAILURES) assert.ok(expected.get(k.name), `no seed of the known-to-fail scenario ${k.name} failed: if its defect is fixed, remove it from test/sim/known.ts (${k.reason})`)
})

/**
 * Seeds that failed on the code before a fix, kept as regression guards (each names what
 * it guards). A seed's path depends on every draw of the simulation: when the simulation
 * changes, check each still fails with its fix reverted, and pick new ones if not
 * (`npm run sim:ack -- --seeds 300 --keep-going` on the reverted code).
 */
const GUARDS: Array<{ seed: number, over: Parameters<typeof simulate>[1], guards: string }> = [
  { seed: 9, over: {}, guards: 'a dedup window written ahead of its reading (the window check)' },
  { seed: 13, over: {}, guards: 'a dedup window written ahead of its reading: the resend acknowledged as a duplicate and lost (fails so with SIM_WINDOW_CHECK=0 too)' },
  { seed: 85, over: { writeFailures: true }, guards: 'readings blocked for room behind a failed write were never admitted again (block)' },
  { seed: 31, over: { writeFailures: true, ackMode: 'delivered' }, guards: 'a delivered-mode duplicate waited for the floor to pass a seq that only a failed write had allocated' },
  { seed: 107918, over: {}, guards: 'a failed write left an evicted range extended over items still on disk (drop-oldest; gateway check after the crash)' }
]

test('regression seeds: each passes', async () => {
  for (const g of GUARDS) {
    const r = await simulate(g.seed, g.over)
    assert.equal(r.violation, null, `seed ${g.seed} (${g.guards}): replay ${replayCommand(g.seed, g.over)}`)
  }
})

test('a seed replays exactly', async () => {
  for (const s of [7, 8]) {
    const a = await simulate(s)
    const b = await simulate(s)
    assert.deepEqual(b, a)
    assert.ok(a.acked > 0 && a.crashes > 0, 'the run acknowledged readings and crashed')
  }
})

test('the oracle fails when the ingest answers stored and keeps nothing', async () => {
  const found: string[] = []
  for (let s = 1; s <= 20 && found.length === 0; s++) {
    const r = await simulate(s, { tamper: 'ingest-drops-one', gateways: 1, upstream: 'http' })
    if (r.violation) found.push(r.violation)
  }
  assert.match(found[0] ?? '', /neither stored upstream, dead-lettered nor evicted|with no durable copy|is gone after/)
})

test('the oracle fails on a dedup window written ahead of its reading', () => {
  const ledger = new Ledger(true, false)
  for (const seq of [1, 2]) ledger.publish({ nk: `dev|1|${seq}`, device: 'dev', boot: 1, seq, kind: 'ok', acked: false })
  const w = new DedupWindow()
  w.check(1, 1)
  w.check(1, 2)
  // seq 1's item and a window that already claims seq 2, whose item is in no batch yet
  ledger.commit('gw1', [['i!0000!0000000000000000', encodeItemFast(0, 0, 'dev', 1, 1, null, 1, { t: 1 })], ['d!dev', w.encode()]])
  assert.match(ledger.violation ?? '', /dedup window of dev claiming boot 1 seq 2, whose item it never wrote/)
})
