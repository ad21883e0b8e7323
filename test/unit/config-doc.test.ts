/**
 * docs/configuration.md is generated from the config schemas (scripts/gen-config-doc.ts),
 * the same source as `--help`; a hand-kept table had drifted to 63 of 92 flags. These tests
 * regenerate it in memory and fail on any difference.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { DOC_PATH, loadPrograms, renderConfigDoc, type Program } from '../../scripts/gen-config-doc.ts'
import { gatewaySchema } from '../../gateway/config.ts'
import { schema as ingestSchema } from '../../ingest/config.ts'
import { simSchema } from '../../device-sim/config.ts'
import { kebab } from '../../common/index.ts'

test('docs/configuration.md is what the schemas generate (run npm run docs:config)', async () => {
  const want = renderConfigDoc(await loadPrograms())
  const have = readFileSync(DOC_PATH, 'utf8')
  if (have === want) return
  const a = have.split('\n')
  const b = want.split('\n')
  let i = 0
  while (i < a.length && a[i] === b[i]) i++
  assert.fail(`docs/configuration.md is stale: run npm run docs:config (first difference at line ${i + 1}:\n  file:      ${a[i] ?? '(end)'}\n  generated: ${b[i] ?? '(end)'})`)
})

test('every flag of the three programs is in exactly one section, in schema order', async () => {
  const programs = await loadPrograms()
  const keys = (p: Program): string[] => p.sections.flatMap((s) => s.fields.map(([k]) => k))
  const byName = new Map(programs.map((p) => [p.name, keys(p)]))
  assert.deepEqual(new Set(byName.get('gateway')), new Set(Object.keys(gatewaySchema)))
  assert.equal(byName.get('gateway')!.length, Object.keys(gatewaySchema).length)
  assert.deepEqual(byName.get('ingest'), Object.keys(ingestSchema))
  assert.deepEqual(byName.get('device-sim'), Object.keys(simSchema))
  const gw = programs.find((p) => p.name === 'gateway')!
  // the component schemas are found, not listed: store, broker, flush, ... each their own section
  for (const title of ['gateway', 'store', 'broker', 'intake', 'flush']) assert.ok(gw.sections.some((s) => s.title === title), `section ${title}`)
  assert.equal(gw.sections.find((s) => s.title === 'store')!.source, 'gateway/store/config.ts')
  assert.ok(gw.sections.find((s) => s.title === 'store')!.fields.some(([k]) => k === 'durability'))
})

test('every flag has a doc string, and the document names its flag, env var and file key', async () => {
  const programs = await loadPrograms()
  const doc = renderConfigDoc(programs)
  for (const p of programs) {
    const part = doc.slice(doc.indexOf(`\n## ${p.name}\n`), doc.indexOf('\n## ', doc.indexOf(`\n## ${p.name}\n`) + 1))
    for (const s of p.sections) {
      for (const [k, spec] of s.fields) {
        assert.ok(spec.doc.trim().length >= 8, `${p.name} ${k}: doc string missing or too short`)
        const row = part.split('\n').find((l) => l.startsWith(`| \`--${kebab(k)}\``))
        assert.ok(row, `${p.name} --${kebab(k)} has no row`)
        assert.ok(row.includes(`\`${k}\``) && row.includes(`\`${p.envPrefix}_`), row)
      }
    }
  }
})

test('a changed doc string or a new flag changes the output (the drift test can fail)', async () => {
  const programs = await loadPrograms()
  const base = renderConfigDoc(programs)
  const gw = programs.find((p) => p.name === 'gateway')!
  const store = gw.sections.find((s) => s.title === 'store')!
  store.fields.push(['tlsCrlFile', { type: 'string', doc: 'PEM certificate revocation list, reloaded on SIGHUP' }])
  const more = renderConfigDoc(programs)
  assert.notEqual(more, base)
  assert.match(more, /\| `--tls-crl-file` \| `GATEWAY_TLS_CRL_FILE` \| `tlsCrlFile` \| string \| \(unset\) \| PEM certificate revocation list, reloaded on SIGHUP \|/)
  // table cells escape the pipe, so a doc string with one keeps its row's columns
  store.fields.push(['x', { type: 'enum', values: ['a', 'b'], default: 'a', doc: 'a | b' }])
  assert.match(renderConfigDoc(programs), /\| `--x` \| `GATEWAY_X` \| `x` \| `a`, `b` \| `a` \| a \\\| b \|/)
})

test('output is deterministic', async () => {
  assert.equal(renderConfigDoc(await loadPrograms()), renderConfigDoc(await loadPrograms()))
})
