/**
 * `--kebab-case value` / `--flag=value` / `--flag` / `--no-flag` parsing for the bench
 * scripts, through the product CLIs' parser (common/config.ts): one parser, the same
 * errors naming the flag. Bench flags come from the command line only (no env, no file).
 */
import { parseConfig, type FieldSpec, type Schema } from '../../common/index.ts'

export type FlagSpec = Record<string, { type: 'number' | 'string' | 'bool', default?: number | string | boolean, doc: string }>

export type Flags = Map<string, number | string | boolean>

function field (name: string, s: FlagSpec[string]): FieldSpec {
  // the flag is the key itself: kebab-case already, and not one the parser keeps for itself
  if (!/^[a-z0-9]+(-[a-z0-9]+)*$/.test(name) || name === 'config' || name === 'help') throw new Error(`bench flag ${JSON.stringify(name)} must be kebab-case and not config or help`)
  const d = s.default
  switch (s.type) {
    case 'number': return { type: 'number', doc: s.doc, ...(typeof d === 'number' ? { default: d } : {}) }
    case 'string': return { type: 'string', doc: s.doc, ...(typeof d === 'string' ? { default: d } : {}) }
    case 'bool': return { type: 'bool', doc: s.doc, ...(typeof d === 'boolean' ? { default: d } : {}) }
  }
}

export function parseFlags (argv: readonly string[], spec: FlagSpec): Flags {
  const schema: Schema = Object.fromEntries(Object.entries(spec).map(([k, s]) => [k, field(k, s)]))
  const rest = argv.filter((a) => a !== '--help')
  const parsed = parseConfig(schema, { argv: rest, env: {}, envPrefix: 'BENCH' }) as Record<string, number | string | boolean | undefined>
  const out: Flags = new Map()
  for (const k of Object.keys(spec)) if (parsed[k] !== undefined) out.set(k, parsed[k])
  if (rest.length !== argv.length) out.set('help', true)
  return out
}

export function helpText (spec: FlagSpec): string {
  return Object.entries(spec).map(([k, s]) => `  --${k}${s.type === 'bool' ? '' : ` <${s.type}>`}${s.default !== undefined ? ` (default ${String(s.default)})` : ''}\n      ${s.doc}`).join('\n')
}

export const num = (f: Flags, k: string): number => {
  const v = f.get(k)
  if (typeof v !== 'number') throw new Error(`--${k} is required (a number)`)
  return v
}
export const str = (f: Flags, k: string): string | undefined => {
  const v = f.get(k)
  return v === undefined ? undefined : String(v)
}
export const bool = (f: Flags, k: string): boolean => f.get(k) === true
