/**
 * docs/metrics.md is the contract of `/metrics` and is generated from the registries
 * (scripts/gen-metrics-doc.ts): a hand-kept table in design.md had drifted, nine help texts
 * differing from what the processes served. These tests build a gateway (temp data dir,
 * ports 0) and the ingest's registry, regenerate the document in memory and fail on any
 * difference, naming the metric and what changed.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { DOC_PATH, gatewayRows, ingestRows, renderMetricsDoc, type MetricRow } from '../../scripts/gen-metrics-doc.ts'

/** The rows of docs/metrics.md's tables, by metric name: | `name` | type | `label`, `label` | help | */
export function documentedRows (markdown: string): Map<string, string> {
  const rows = new Map<string, string>()
  for (const line of markdown.split('\n')) {
    const m = /^\|\s*`((?:gateway|ingest)_[a-z0-9_]+)`\s*\|/.exec(line)
    if (m) rows.set(m[1]!, line)
  }
  return rows
}

/** One line a metric that is new, gone or changed between the file and the generated text. */
export function metricDifferences (have: string, want: string): string[] {
  const a = documentedRows(have)
  const b = documentedRows(want)
  const out: string[] = []
  for (const [name, row] of b) {
    const old = a.get(name)
    if (old === undefined) out.push(`${name} is registered but has no row in docs/metrics.md`)
    else if (old !== row) out.push(`${name} changed:\n    file:      ${old}\n    generated: ${row}`)
  }
  for (const name of a.keys()) if (!b.has(name)) out.push(`${name} has a row in docs/metrics.md but nothing registers it`)
  return out
}

// one gateway for both tests: building it opens LevelDB and two listeners
let rows: Promise<[MetricRow[], MetricRow[]]> | undefined
const registries = async (): Promise<[MetricRow[], MetricRow[]]> => await (rows ??= Promise.all([gatewayRows(), ingestRows()]))

test('docs/metrics.md is what the registries generate (run npm run docs:metrics)', async () => {
  const [gateway, ingest] = await registries()
  assert.ok(gateway.length > 20, `only ${gateway.length} gateway metrics found`)
  assert.ok(ingest.length > 10, `only ${ingest.length} ingest metrics found`)
  const want = renderMetricsDoc(gateway, ingest)
  const have = readFileSync(DOC_PATH, 'utf8')
  if (have === want) return
  const diffs = metricDifferences(have, want)
  assert.fail('docs/metrics.md is stale: run npm run docs:metrics\n' + (diffs.length > 0 ? diffs.join('\n') : '(the text around the tables differs)'))
})

test('every metric has a help text, and names follow design.md section 9', async () => {
  for (const r of (await registries()).flat()) {
    assert.ok(r.help.trim().length >= 8, `${r.name}: help text missing or too short`)
    if (r.type === 'counter') assert.match(r.name, /_total$/, `${r.name}: a counter's name ends _total`)
  }
})

test('the comparison names a new row, a gone row and a changed row', () => {
  const row = (name: string, type: string, help: string): MetricRow => ({ name, type, labels: [], help })
  const have = renderMetricsDoc([row('gateway_b', 'histogram', 'b'), row('gateway_gone_total', 'counter', 'gone')], [])
  const want = renderMetricsDoc([row('gateway_a_total', 'counter', 'a'), row('gateway_b', 'gauge', 'b')], [])
  const diffs = metricDifferences(have, want)
  assert.equal(diffs.length, 3, diffs.join('\n'))
  assert.match(diffs[0]!, /gateway_a_total is registered but has no row/)
  assert.match(diffs[1]!, /gateway_b changed:\n {4}file: {6}\| `gateway_b` \| histogram/)
  assert.match(diffs[2]!, /gateway_gone_total has a row in docs\/metrics.md but nothing registers it/)
})
