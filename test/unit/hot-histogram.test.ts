/**
 * HotHistogram gives what prom-client's own observe gives, through a scrape, a
 * get() and a reset; it reaches into prom-client's value set, so an upgrade that changes
 * that layout fails here.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Histogram, Registry } from 'prom-client'
import { HotHistogram } from '../../gateway/metrics/hot-histogram.ts'

const buckets = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.1, 1, 5]

function pair (): { hot: HotHistogram, ref: Histogram, hotReg: Registry, refReg: Registry } {
  const hotReg = new Registry()
  const refReg = new Registry()
  return {
    hot: new HotHistogram({ name: 'h', help: 'h', buckets, registers: [hotReg] }),
    ref: new Histogram({ name: 'h', help: 'h', buckets, registers: [refReg] }),
    hotReg,
    refReg
  }
}

test('recorded values scrape as observed ones, across reads and a reset', async () => {
  const { hot, ref, hotReg, refReg } = pair()
  const values = [0, 0.0005, 0.0007, 0.003, 0.003, 0.05, 2, 7, 30, 0.0001, 1]
  for (const v of values) { hot.record(v); ref.observe(v) }
  assert.equal(await hotReg.metrics(), await refReg.metrics())
  assert.match(await hotReg.metrics(), /h_count 11/)
  for (const v of values.slice(0, 4)) { hot.record(v); ref.observe(v) }
  // the sum is added in another order: equal to within float rounding
  const round = (vs: Array<{ value: number }>): unknown[] => vs.map((v) => ({ ...v, value: Math.round(v.value * 1e9) / 1e9 }))
  assert.deepEqual(round((await hot.get()).values), round((await ref.get()).values))
  hot.reset(); ref.reset()
  assert.equal(await hotReg.metrics(), await refReg.metrics())
  hot.record(0.004); ref.observe(0.004)
  assert.equal(await hotReg.metrics(), await refReg.metrics())
  assert.match(await hotReg.metrics(), /h_bucket\{le="0.005"\} 1/)
})
