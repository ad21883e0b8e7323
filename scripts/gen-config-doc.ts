/**
 * Writes docs/configuration.md from the config schemas: every flag of the gateway, the ingest
 * and the device simulator, with its env var, config-file key, type, default and `doc`
 * string, the same source `--help` prints. `npm run docs:config` rewrites the file;
 * `npm run docs:config -- --check` exits 1 when the file is stale (test/unit/config-doc.test.ts
 * does the same in the suite).
 *
 * The gateway's sections are found, not listed: every `gateway/<component>/config.ts` and
 * `gateway/<component>/*-config.ts` whose exported `...Schema` objects are spread into
 * gatewaySchema becomes one section; keys declared in gateway/config.ts itself form the
 * "gateway" section. A new component schema therefore shows up without touching this file.
 * Output is deterministic: sections in the order of their first key in gatewaySchema (the
 * order of `--help`), fields in schema order.
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { envName, kebab, LOG_ENV_HELP, type FieldSpec, type Schema } from '../common/index.ts'
import { gatewaySchema } from '../gateway/config.ts'
import { schema as ingestSchema, ENV_PREFIX as INGEST_PREFIX } from '../ingest/config.ts'
import { simSchema, ENV_PREFIX as SIM_PREFIX } from '../device-sim/config.ts'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const DOC_PATH = join(ROOT, 'docs', 'configuration.md')

export type Section = { title: string, source: string, fields: Array<[string, FieldSpec]> }
export type Program = {
  name: string
  /** how it is run from a checkout */
  dev: string
  envPrefix: string
  intro: string
  sections: Section[]
  extra: string
}

function isSchema (v: unknown): v is Schema {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false
  const vals = Object.values(v)
  return vals.length > 0 && vals.every((f) => f !== null && typeof f === 'object' && typeof (f as FieldSpec).type === 'string' && typeof (f as FieldSpec).doc === 'string')
}

/** gateway/<dir>/config.ts and gateway/<dir>/*-config.ts, sorted. */
function gatewayConfigFiles (): string[] {
  const out: string[] = []
  const gw = join(ROOT, 'gateway')
  for (const dir of readdirSync(gw).sort()) {
    const d = join(gw, dir)
    if (!statSync(d).isDirectory()) continue
    for (const f of readdirSync(d).sort()) if (f === 'config.ts' || f.endsWith('-config.ts')) out.push(join(d, f))
  }
  return out
}

/** Splits gatewaySchema into one section per component schema file. */
export async function gatewaySections (): Promise<Section[]> {
  const owner = new Map<string, { title: string, source: string }>()
  for (const file of gatewayConfigFiles()) {
    const mod = await import(pathToFileURL(file).href) as Record<string, unknown>
    const rel = relative(ROOT, file).split('\\').join('/')
    const [, component, base] = rel.split('/') as [string, string, string]
    const title = base === 'config.ts' ? component : `${component}: ${base.replace(/-config\.ts$/, '')}`
    for (const name of Object.keys(mod).sort()) {
      const v = mod[name]
      if (!/Schema$/.test(name) || !isSchema(v)) continue
      for (const k of Object.keys(v)) if (k in gatewaySchema && !owner.has(k)) owner.set(k, { title, source: rel })
    }
  }
  const sections = new Map<string, Section>()
  for (const [k, spec] of Object.entries(gatewaySchema as Schema)) {
    const o = owner.get(k) ?? { title: 'gateway', source: 'gateway/config.ts' }
    let s = sections.get(o.title)
    if (!s) { s = { title: o.title, source: o.source, fields: [] }; sections.set(o.title, s) }
    s.fields.push([k, spec])
  }
  return [...sections.values()]
}

export async function loadPrograms (): Promise<Program[]> {
  return [
    {
      name: 'gateway',
      dev: 'npm run gateway -- [flags]',
      envPrefix: 'GATEWAY',
      intro: 'The edge gateway: MQTT broker, durable intake, LevelDB store, upstream flusher, admin HTTP.',
      sections: await gatewaySections(),
      extra: [
        '- `--config FILE` (env `GATEWAY_CONFIG`): JSON object with any of the keys above. The file alone also takes',
        '  `mappings`, the topic mappings for devices that publish on their own topics ([mapping.md](mapping.md)).',
        '- `--hash-password`: reads a password on stdin and prints its scrypt hash for `--auth-file`.',
        '- `gateway passwd FILE add-device ID | add-app NAME | remove NAME | list` edits the `--auth-file`',
        '  ([security.md](security.md)); `gateway dlq list|show|export|replay|purge ...` reads and replays',
        '  dead letters (`gateway dlq --help`, [operator.md](operator.md)).',
        '- `--help`, `--version`.'
      ].join('\n')
    },
    {
      name: 'ingest',
      dev: 'npm run ingest -- [flags]',
      envPrefix: INGEST_PREFIX,
      intro: 'The reference cloud ingest ([ingest.md](ingest.md)).',
      sections: [{ title: 'ingest', source: 'ingest/config.ts', fields: Object.entries(ingestSchema as Schema) }],
      extra: [
        `- \`--config FILE\` (env \`${INGEST_PREFIX}_CONFIG\`): JSON object with any of the keys above.`,
        '- `DATABASE_URL`: the PostgreSQL URL when neither `--postgres-url` nor `--postgres-url-file` is given.',
        '- `--version`.'
      ].join('\n')
    },
    {
      name: 'device-sim',
      dev: 'npm run sim -- [flags]',
      envPrefix: SIM_PREFIX,
      intro: 'The device simulator and its audit ([device-sim.md](device-sim.md)).',
      sections: [{ title: 'device-sim', source: 'device-sim/config.ts', fields: Object.entries(simSchema as Schema) }],
      extra: [
        `- \`--config FILE\` (env \`${SIM_PREFIX}_CONFIG\`): JSON object with any of the keys above.`,
        '- `--version`.'
      ].join('\n')
    }
  ]
}

const cell = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ')
const code = (s: string): string => s === '' ? '' : '`' + s.replace(/\|/g, '\\|') + '`'

const KiB = 1024
function humanBytes (n: number): string | undefined {
  for (const [unit, size] of [['GiB', KiB ** 3], ['MiB', KiB ** 2], ['KiB', KiB]] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`
  }
  return undefined
}
function humanMs (n: number): string | undefined {
  for (const [unit, size] of [['days', 86_400_000], ['h', 3_600_000], ['min', 60_000], ['s', 1000]] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`
  }
  return undefined
}

function typeText (spec: FieldSpec): string {
  switch (spec.type) {
    case 'int': case 'number': {
      const range = spec.min === undefined && spec.max === undefined ? '' : ` ${spec.min ?? ''}..${spec.max ?? ''}`
      return spec.type + range
    }
    case 'enum': return spec.values.map((v) => code(v)).join(', ')
    case 'string': return spec.pattern ? `string ${code(String(spec.pattern))}` : 'string'
    case 'list': return 'list (comma-separated, repeatable)'
    case 'bool': return 'bool'
  }
}

function defaultText (key: string, spec: FieldSpec): string {
  const d = spec.default
  if (d === undefined) return spec.type === 'bool' ? '`false`' : spec.type === 'list' ? '(empty)' : '(unset)'
  if (Array.isArray(d)) return d.length === 0 ? '(empty)' : code(d.join(','))
  if (d === '') return '(empty)'
  if (typeof d === 'number') {
    const h = /Bytes$/.test(key) ? humanBytes(d) : /Ms$/.test(key) ? humanMs(d) : undefined
    return code(String(d)) + (h ? ` (${h})` : '')
  }
  return code(String(d))
}

function renderSection (p: Program, s: Section, heading: string): string {
  const rows = s.fields.map(([k, spec]) => {
    const flag = spec.type === 'bool' && k !== 'help' ? `\`--${kebab(k)}\`, \`--no-${kebab(k)}\`` : `\`--${kebab(k)}\``
    return `| ${flag} | \`${envName(p.envPrefix, k)}\` | \`${k}\` | ${typeText(spec)} | ${defaultText(k, spec)} | ${cell(spec.doc)} |`
  })
  return [
    `${heading} ${s.title}`,
    '',
    `Declared in \`${s.source}\`.`,
    '',
    '| flag | env | file key | type | default | what it does |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows,
    ''
  ].join('\n')
}

export function renderConfigDoc (programs: Program[]): string {
  const out: string[] = [
    '# Configuration',
    '',
    '<!-- Generated by scripts/gen-config-doc.ts from the config schemas: do not edit by hand.',
    '     After changing a flag or its doc string, run npm run docs:config. -->',
    '',
    'Every flag of every program, generated from the same schemas and `doc` strings that `--help`',
    'prints. Each flag `--kebab-case` is also an environment variable `{PREFIX}_{SNAKE_CASE}` and a',
    'camelCase key of the JSON file given with `--config FILE`. Precedence, highest first: flags,',
    'environment, config file, defaults. Booleans take `--flag`, `--no-flag` or `--flag true|false`',
    '(env and file: `true`/`false`, `1`/`0`, `yes`/`no`); lists take comma lists, and a repeated',
    'flag adds to the list. Unknown keys and bad values stop the program at startup with exit',
    'code 2 and a message naming the field and the allowed range (`common/config.ts`); an unknown',
    'flag or key suggests the nearest known one (`--mqtt-prot`: did you mean `--mqtt-port`?). A',
    'file a flag names (`--auth-file`, `--token-file`, `--admin-token-file`, TLS files) that cannot',
    'be read also exits 2, naming the flag and the path.',
    '',
    '`gateway --help` prints the same sections, after the flags a new user needs first',
    '(`--upstream`, `--token`, `--data-dir`, the ports, `--auth`).',
    '',
    'The flags that matter most, with what they trade, are in the [README](../README.md#the-knobs-that-matter);',
    'the contracts among them in [design.md](design.md) section 9.',
    '',
    'Contents: ' + programs.map((p) => `[${p.name}](#${p.name})`).join(', ') + ', [logging](#logging).',
    ''
  ]
  for (const p of programs) {
    const count = p.sections.reduce((n, s) => n + s.fields.length, 0)
    out.push(`## ${p.name}`, '', `\`${p.name} [flags]\` (\`${p.dev}\` in a checkout). ${p.intro} ${count} flags, env prefix \`${p.envPrefix}_\`.`, '')
    if (p.sections.length > 1) {
      out.push('Sections: ' + p.sections.map((s) => `${s.title} (${s.fields.length})`).join(', ') + '.', '')
      for (const s of p.sections) out.push(renderSection(p, s, '###'))
    } else {
      for (const s of p.sections) out.push(renderSection(p, s, '###'))
    }
    out.push('Besides the table:', '', p.extra, '')
  }
  out.push(
    '## logging',
    '',
    'Every program reads these from the environment (`common/log.ts`):',
    '',
    '```',
    LOG_ENV_HELP.replace(/\n+$/, ''),
    '```',
    '',
    'With `DEBUG=mqtt-packet:*` set at start, the gateway traces the MQTT parser and writer to',
    'stderr; without `DEBUG` those trace calls are skipped entirely (left on, they cost about 3%',
    'of the intake\'s CPU).',
    ''
  )
  return out.join('\n')
}

async function main (): Promise<void> {
  const text = renderConfigDoc(await loadPrograms())
  if (process.argv.includes('--check')) {
    let old = ''
    try { old = readFileSync(DOC_PATH, 'utf8') } catch {}
    if (old !== text) {
      process.stderr.write('docs/configuration.md is stale: run npm run docs:config\n')
      process.exit(1)
    }
    return
  }
  writeFileSync(DOC_PATH, text)
  process.stdout.write(`wrote ${relative(process.cwd(), DOC_PATH)}\n`)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => { process.stderr.write(`gen-config-doc: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
}
