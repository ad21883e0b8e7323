/**
 * `--kebab-case value` / `--flag=value` / `--flag` / `--no-flag` parsing for the bench
 * scripts. Unknown flags are an error naming the flag, like the product CLIs.
 */
export type FlagSpec = Record<string, { type: 'number' | 'string' | 'bool', default?: number | string | boolean, doc: string }>

export type Flags = Map<string, number | string | boolean>

export function parseFlags (argv: readonly string[], spec: FlagSpec): Flags {
  const out: Flags = new Map()
  for (const [k, s] of Object.entries(spec)) if (s.default !== undefined) out.set(k, s.default)
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a} (flags are --kebab-case)`)
    let name = a.slice(2)
    let value: string | undefined
    const eq = name.indexOf('=')
    if (eq >= 0) { value = name.slice(eq + 1); name = name.slice(0, eq) }
    if (name === 'help') { out.set('help', true); continue }
    const s = spec[name]
    if (!s && name.startsWith('no-') && spec[name.slice(3)]?.type === 'bool') { out.set(name.slice(3), false); continue }
    if (!s) throw new Error(`unknown flag --${name} (known: ${Object.keys(spec).map((k) => '--' + k).join(' ')})`)
    if (s.type === 'bool') {
      out.set(name, value === undefined ? true : value === 'true' || value === '1')
      continue
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new Error(`--${name} needs a value`)
      value = argv[++i]!
    }
    if (s.type === 'number') {
      const n = Number(value)
      if (value.trim() === '' || !Number.isFinite(n)) throw new Error(`--${name} must be a number, got ${JSON.stringify(value)}`)
      out.set(name, n)
    } else out.set(name, value)
  }
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
