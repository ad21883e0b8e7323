import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AckCode } from '../../protocol/index.ts'
import { Chaos, createRng } from '../../ingest/chaos.ts'

const off = { retryRate: 0, rejectRate: 0, failRate: 0, dropRate: 0, latencyMs: 0, seed: 1 }

test('createRng: same seed, same sequence; values in [0, 1)', () => {
  const a = createRng(42)
  const b = createRng(42)
  const c = createRng(43)
  const xs = Array.from({ length: 1000 }, () => a())
  assert.deepEqual(Array.from({ length: 1000 }, () => b()), xs)
  assert.notDeepEqual(Array.from({ length: 1000 }, () => c()), xs)
  assert.ok(xs.every((x) => x >= 0 && x < 1))
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length
  assert.ok(mean > 0.45 && mean < 0.55, `mean ${mean}`)
})

test('Chaos off: no faults at all', () => {
  const c = new Chaos(off)
  assert.equal(c.enabled, false)
  for (let i = 0; i < 100; i++) {
    assert.equal(c.itemFault(), null)
    assert.deepEqual(c.batchFault(), { kind: 'none' })
    assert.equal(c.dropAfterCommit(), false)
  }
})

test('Chaos item rates are honoured and reproducible', () => {
  const run = (): (number | null)[] => { const c = new Chaos({ ...off, retryRate: 0.2, rejectRate: 0.1, seed: 7 }); return Array.from({ length: 10000 }, () => c.itemFault()) }
  const xs = run()
  assert.deepEqual(run(), xs)
  const retry = xs.filter((x) => x === AckCode.Retry).length
  const reject = xs.filter((x) => x === AckCode.Rejected).length
  assert.ok(retry > 1800 && retry < 2200, `retry ${retry}`)
  assert.ok(reject > 850 && reject < 1150, `reject ${reject}`)
})

test('Chaos rate 1: every batch fails with 500 or 503, some with Retry-After; every batch drops', () => {
  const c = new Chaos({ ...off, failRate: 1, dropRate: 1, seed: 3 })
  const faults = Array.from({ length: 200 }, () => c.batchFault())
  assert.ok(faults.every((f) => f.kind === 'fail'))
  const statuses = new Set(faults.map((f) => f.kind === 'fail' ? f.status : 0))
  assert.deepEqual([...statuses].sort(), [500, 503])
  assert.ok(faults.some((f) => f.kind === 'fail' && f.retryAfterS === 1))
  assert.ok(Array.from({ length: 50 }, () => c.dropAfterCommit()).every(Boolean))
})

// chaos is a wrapper around the commit step, not steps inside the pipeline
test('withChaos: a failed batch never reaches the commit; a dropped one is committed, then not answered', async () => {
  const { withChaos } = await import('../../ingest/chaos.ts')
  const { answer } = await import('../../ingest/pipeline.ts')
  const { batchSteps } = await import('../../ingest/server.ts')
  const { createMetrics } = await import('../../ingest/metrics.ts')
  const { pino } = await import('pino')
  assert.ok(!batchSteps().some((s) => s.name === 'chaosCommit'), 'the default pipeline has no chaos step')
  const metrics = createMetrics(() => undefined)
  const log = pino({ level: 'silent' })
  const ctx = () => ({ version: 1 as const, raw: Buffer.alloc(0), body: Buffer.alloc(0), results: [], gateway: 'gw', batch: { batch: 'b1' }, dropped: false, items: { valid: [{ index: 0, item: [0, 1] as never }], results: [], rejected: 0 } as never })
  let commits = 0
  const commit = withChaos(async () => { commits++ })
  await assert.rejects(commit(ctx(), { chaos: new Chaos({ ...off, failRate: 1 }), metrics, log }), /injected failure/)
  assert.equal(commits, 0)
  const c = ctx()
  await commit(c, { chaos: new Chaos({ ...off, dropRate: 1 }), metrics, log })
  assert.equal(commits, 1)
  assert.equal(c.dropped, true)
  assert.equal(answer(c as never), null, 'the transport answers nothing (HTTP destroys the socket, MQTT publishes no results)')
  const r = ctx()
  await commit(r, { chaos: new Chaos({ ...off, rejectRate: 1 }), metrics, log })
  assert.equal((r.items as { valid: unknown[] }).valid.length, 0, 'a rejected item is not passed to the commit')
})
