/** gateway/metrics/hot-counter.ts: plain-number cells reach Prometheus on each read, once. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import { HotCounter } from '../../gateway/metrics/hot-counter.ts'

test('cell increments are added on a read, not counted twice by the next read, and other label values stay apart', async () => {
  const registry = new Registry()
  const hot = new HotCounter({ name: 'x_total', help: 'x', label: 'kind', registers: [registry] })
  const a = hot.cell('a')
  const b = hot.cell('b')
  for (let i = 0; i < 5; i++) a.inc()
  b.inc()
  assert.match(await registry.metrics(), /x_total\{kind="a"\} 5\n/)
  assert.match(await registry.metrics(), /x_total\{kind="a"\} 5\n/, 'a second read adds nothing')
  a.inc()
  hot.cell('a').inc() // a second cell of the same value shares its count
  const text = await registry.metrics()
  assert.match(text, /x_total\{kind="a"\} 7\n/)
  assert.match(text, /x_total\{kind="b"\} 1\n/)
})
