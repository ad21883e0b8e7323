/**
 * One config schema per component, validated once at startup (docs/design.md section 9).
 * Sources, lowest to highest precedence: defaults, JSON file (`--config`), environment
 * (`{PREFIX}_{SNAKE_CASE}`), command-line flags (`--kebab-case value`, `--kebab-case=value`,
 * `--flag`/`--no-flag` for booleans; list fields take comma lists and repeat). Unknown keys
 * and bad values throw ConfigError naming the field and the allowed range. No I/O here:
 * the caller reads the file.
 */
import { ConfigError } from '../protocol/errors.ts'

type Base = { doc: string }
export type FieldSpec =
  | Base & { type: 'int', default?: number, min?: number, max?: number }
  | Base & { type: 'number', default?: number, min?: number, max?: number }
  | Base & { type: 'string', default?: string, pattern?: RegExp }
  | Base & { type: 'enum', values: readonly string[], default?: string }
  | Base & { type: 'bool', default?: boolean }
  | Base & { type: 'list', default?: readonly string[] }

export type Schema = Record<string, FieldSpec>

type ValueOf<F extends FieldSpec> =
  F extends { type: 'int' | 'number' } ? number :
    F extends { type: 'enum', values: readonly (infer V)[] } ? V :
      F extends { type: 'bool' } ? boolean :
        F extends { type: 'list' } ? string[] : string

type Required<F extends FieldSpec> = F extends { default: unknown } ? true : F extends { type: 'list' | 'bool' } ? true : false

export type ConfigOf<S extends Schema> =
  { [K in keyof S as Required<S[K]> extends true ? K : never]: ValueOf<S[K]> } &
  { [K in keyof S as Required<S[K]> extends true ? never : K]?: ValueOf<S[K]> }

export const kebab = (k: string): string => k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
export const envName = (prefix: string, k: string): string => `${prefix}_${k.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase()}`

function coerce (key: string, spec: FieldSpec, raw: unknown, where: string): unknown {
  const bad = (msg: string): never => { throw new ConfigError(key, `${msg} (from ${where}, got ${JSON.stringify(raw)})`) }
  switch (spec.type) {
    case 'int': case 'number': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN
      if (!Number.isFinite(n)) bad('must be a number')
      if (spec.type === 'int' && !Number.isInteger(n)) bad('must be an integer')
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) bad(`must be in ${spec.min ?? '-inf'}..${spec.max ?? 'inf'}`)
      return n
    }
    case 'bool':
      if (typeof raw === 'boolean') return raw
      if (raw === 'true' || raw === '1' || raw === 'yes') return true
      if (raw === 'false' || raw === '0' || raw === 'no') return false
      return bad('must be true or false')
    case 'enum':
      if (typeof raw !== 'string' || !spec.values.includes(raw)) bad(`must be one of ${spec.values.join('|')}`)
      return raw
    case 'list':
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return [...raw]
      if (typeof raw === 'string') return raw.split(',').map((s) => s.trim()).filter(Boolean)
      return bad('must be a comma-separated list or an array of strings')
    case 'string':
      if (typeof raw !== 'string' && typeof raw !== 'number') bad('must be text')
      if (spec.pattern && !spec.pattern.test(String(raw))) bad(`must match ${spec.pattern}`)
      return String(raw)
  }
}

/** Edit distance (insertions, deletions, substitutions, adjacent swaps), for suggestions. */
function distance (a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => i === 0 ? j : j === 0 ? i : 0))
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[a.length]![b.length]!
}

/**
 * The known name closest to an unknown one, or undefined when none is close: within a third
 * of its length in edits (at least 2), compared without case, dashes and underscores, or one
 * that starts with it. One suggestion reads better than a list of a hundred keys.
 */
export function nearest (name: string, known: readonly string[]): string | undefined {
  const norm = (s: string): string => s.toLowerCase().replace(/[-_]/g, '')
  const n = norm(name)
  if (n === '') return undefined
  let best: string | undefined
  let bestD = Infinity
  for (const k of known) {
    const d = distance(n, norm(k))
    if (d < bestD) { best = k; bestD = d }
  }
  if (best !== undefined && bestD <= Math.max(2, Math.floor(n.length / 3))) return best
  return known.find((k) => norm(k).startsWith(n) && n.length >= 3)
}

export type ConfigSources = {
  argv: readonly string[]
  env: Record<string, string | undefined>
  file?: Record<string, unknown>
  envPrefix: string
}

/** Extracts `--config FILE` (or `{PREFIX}_CONFIG`) so the caller can read the file first. */
export function configFileArg (argv: readonly string[], env: Record<string, string | undefined>, envPrefix: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--config') return argv[i + 1]
    if (argv[i]!.startsWith('--config=')) return argv[i]!.slice(9)
  }
  return env[`${envPrefix}_CONFIG`]
}

export function parseConfig<S extends Schema> (schema: S, src: ConfigSources): ConfigOf<S> {
  const out: Record<string, unknown> = {}
  for (const [k, spec] of Object.entries(schema)) {
    if (spec.default !== undefined) out[k] = Array.isArray(spec.default) ? [...spec.default] : spec.default
    else if (spec.type === 'list') out[k] = []
    else if (spec.type === 'bool') out[k] = false
  }
  if (src.file) {
    for (const [k, v] of Object.entries(src.file)) {
      const spec = schema[k]
      if (!spec) {
        const near = nearest(k, Object.keys(schema))
        throw new ConfigError(k, `unknown key in the config file${near ? `; did you mean ${near}?` : ''} (every key is a flag in camelCase: see --help)`)
      }
      out[k] = coerce(k, spec, v, 'config file')
    }
  }
  for (const [k, spec] of Object.entries(schema)) {
    const name = envName(src.envPrefix, k)
    const v = src.env[name]
    if (v !== undefined && v !== '') out[k] = coerce(k, spec, v, `env ${name}`)
  }
  const byFlag = new Map(Object.keys(schema).map((k) => [kebab(k), k]))
  const seenList = new Set<string>()
  const argv = src.argv
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (!a.startsWith('--')) throw new ConfigError(a, 'unexpected argument (flags are --kebab-case)')
    let name = a.slice(2)
    let value: string | undefined
    const eq = name.indexOf('=')
    if (eq >= 0) { value = name.slice(eq + 1); name = name.slice(0, eq) }
    if (name === 'config') { if (value === undefined) i++; continue }
    const key = byFlag.get(name)
    if (!key && name.startsWith('no-') && schema[byFlag.get(name.slice(3)) ?? '']?.type === 'bool') {
      out[byFlag.get(name.slice(3))!] = false
      continue
    }
    if (!key) {
      const near = nearest(name, [...byFlag.keys()])
      throw new ConfigError(name, `unknown flag --${name}${near ? `; did you mean --${near}?` : ''} (see --help)`)
    }
    const spec = schema[key]!
    if (spec.type === 'bool' && value === undefined) {
      const next = argv[i + 1]
      if (next === 'true' || next === 'false') { value = next; i++ } else value = 'true'
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new ConfigError(key, `--${name} needs a value`)
      value = argv[++i]
    }
    const v = coerce(key, spec, value, `--${name}`)
    if (spec.type === 'list') {
      out[key] = seenList.has(key) ? [...(out[key] as string[]), ...(v as string[])] : v
      seenList.add(key)
    } else out[key] = v
  }
  return out as ConfigOf<S>
}

/** One flag's lines of `--help`. An empty default ('' or []) prints no `(default )`. */
function helpEntry (k: string, spec: FieldSpec, envPrefix: string): string {
  const type = spec.type === 'enum' ? spec.values.join('|') : spec.type
  const shown = spec.default === undefined ? '' : Array.isArray(spec.default) ? spec.default.join(',') : String(spec.default)
  const def = shown === '' ? '' : ` (default ${shown})`
  return `  --${kebab(k)} <${type}>${def}\n      ${spec.doc} [env ${envName(envPrefix, k)}]`
}

export function helpText (schema: Schema, envPrefix: string): string {
  return Object.entries(schema).map(([k, spec]) => helpEntry(k, spec, envPrefix)).join('\n')
}

export type HelpSection = { title: string, keys: readonly string[] }

/**
 * `--help` in sections (a flat list of a hundred flags put the ones a new user needs after
 * seventy lines of limits). Each flag is printed once, under the first section that names it.
 */
export function helpSections (schema: Schema, envPrefix: string, sections: readonly HelpSection[]): string {
  const shown = new Set<string>()
  const out: string[] = []
  for (const s of sections) {
    const keys = s.keys.filter((k) => schema[k] !== undefined && !shown.has(k))
    if (keys.length === 0) continue
    out.push(`${s.title}:`)
    for (const k of keys) { shown.add(k); out.push(helpEntry(k, schema[k]!, envPrefix)) }
    out.push('')
  }
  return out.join('\n').trimEnd()
}
