/**
 * The metric table in docs/design.md section 9 is the contract of `/metrics` (issue #21):
 * every gateway_* and ingest_* metric a running gateway and a fresh ingest registry expose
 * has a row there with the same type and labels, and every row names a metric that exists.
 * prom-client's default process metrics (`gateway_process_*`, `ingest_nodejs_*`...) are
 * left out: the table says so in one line instead of listing them.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Registry, collectDefaultMetrics } from 'prom-client'
import { Gateway, parseGatewayConfig } from '../../gateway/index.ts'
import { createMetrics } from '../../ingest/metrics.ts'
import { ROOT, tempDir } from '../helpers/index.ts'
import { silentLogger } from '../helpers/gateway.ts'

type Row = { name: string, type: string, labels: string[] }

/** Rows of the tables in docs/design.md: | `name` | type | `label`, `label` | meaning | */
export function documentedMetrics (markdown: string): Map<string, Row> {
  const rows = new Map<string, Row>()
  for (const line of markdown.split('\n')) {
    const m = /^\|\s*`((?:gateway|ingest)_[a-z0-9_]+)`\s*\|\s*([a-z]+)\s*\|([^|]*)\|/.exec(line)
    if (!m) continue
    const labels = [...m[3]!.matchAll(/`([a-z_]+)`/g)].map((l) => l[1]!).sort()
    rows.set(m[1]!, { name: m[1]!, type: m[2]!, labels })
  }
  return rows
}

function defaultNames (prefix: string): Set<string> {
  const r = new Registry()
  collectDefaultMetrics({ register: r, prefix })
  return new Set(r.getMetricsAsArray().map((m) => m.name))
}

async function exposed (registry: Registry, prefix: string): Promise<Map<string, Row>> {
  const defaults = defaultNames(prefix)
  const rows = new Map<string, Row>()
  // prom-client's typings leave out `name` and `labelNames`, which every metric object has
  for (const metric of registry.getMetricsAsArray()) {
    const m = metric as unknown as { name: string, labelNames?: string[], get: () => Promise<{ type: unknown }> }
    if (defaults.has(m.name)) continue
    const { type } = await m.get()
    rows.set(m.name, { name: m.name, type: String(type), labels: [...(m.labelNames ?? [])].sort() })
  }
  return rows
}

/** The differences between what runs and what the table says, one line each, empty when they agree. */
export function compare (actual: Map<string, Row>, documented: Map<string, Row>, prefix: string): string[] {
  const out: string[] = []
  for (const [name, a] of actual) {
    const d = documented.get(name)
    if (!d) out.push(`${name} (${a.type}, labels [${a.labels.join(', ')}]) is exposed but has no row in the metric table of docs/design.md section 9; add the row  | \`${name}\` | ${a.type} | ${a.labels.map((l) => '`' + l + '`').join(', ')} | meaning |`)
    else {
      if (d.type !== a.type) out.push(`${name}: docs/design.md says ${d.type}, the registry has a ${a.type}`)
      if (d.labels.join() !== a.labels.join()) out.push(`${name}: docs/design.md says labels [${d.labels.join(', ')}], the registry has [${a.labels.join(', ')}]`)
    }
  }
  for (const name of documented.keys()) {
    if (name.startsWith(prefix) && !actual.has(name)) out.push(`${name} is in the metric table of docs/design.md section 9 but no ${prefix.slice(0, -1)} registers it: remove the row or restore the metric`)
  }
  return out
}

const doc = async (): Promise<Map<string, Row>> => documentedMetrics(await readFile(join(ROOT, 'docs', 'design.md'), 'utf8'))

test('every gateway_* metric of a running gateway is in the docs/design.md table, and every row exists', async (t) => {
  // a topic mapping so that the mapper (and its counter) exists; everything else registers unconditionally
  const base = parseGatewayConfig({ argv: [], env: {}, file: { mappings: [{ topic: 'metrics-doc/+id/t', device: '{id}' }] } })
  const gw = await Gateway.create({ ...base, host: '127.0.0.1', mqttPort: 0, adminPort: 0, dataDir: await tempDir(t) }, silentLogger, { defaultMetrics: true })
  t.after(() => gw.close())
  const actual = await exposed(gw.metrics.registry, 'gateway_')
  assert.ok(actual.size > 20, `only ${actual.size} gateway metrics found`)
  const problems = compare(actual, await doc(), 'gateway_')
  assert.deepEqual(problems, [], 'docs/design.md metric table and the gateway registry disagree:\n' + problems.join('\n'))
})

test('every ingest_* metric is in the docs/design.md table, and every row exists', async () => {
  const actual = await exposed(createMetrics(() => undefined).registry, 'ingest_')
  assert.ok(actual.size > 10, `only ${actual.size} ingest metrics found`)
  const problems = compare(actual, await doc(), 'ingest_')
  assert.deepEqual(problems, [], 'docs/design.md metric table and the ingest registry disagree:\n' + problems.join('\n'))
})

test('the comparison names a missing row, a stale row, and a type or label mismatch', () => {
  const actual = new Map<string, Row>([
    ['gateway_a_total', { name: 'gateway_a_total', type: 'counter', labels: ['x'] }],
    ['gateway_b', { name: 'gateway_b', type: 'gauge', labels: [] }],
    ['gateway_c_total', { name: 'gateway_c_total', type: 'counter', labels: ['y'] }]
  ])
  const documented = documentedMetrics([
    '| `gateway_b` | histogram | | b |',
    '| `gateway_c_total` | counter | `z` | c |',
    '| `gateway_gone_total` | counter | | gone |',
    '| `ingest_other_total` | counter | | not a gateway metric |'
  ].join('\n'))
  const problems = compare(actual, documented, 'gateway_')
  assert.equal(problems.length, 4, problems.join('\n'))
  assert.match(problems[0]!, /gateway_a_total \(counter, labels \[x\]\) is exposed but has no row/)
  assert.match(problems[1]!, /gateway_b: docs\/design.md says histogram, the registry has a gauge/)
  assert.match(problems[2]!, /gateway_c_total: docs\/design.md says labels \[z\], the registry has \[y\]/)
  assert.match(problems[3]!, /gateway_gone_total is in the metric table .* but no gateway registers it/)
})
