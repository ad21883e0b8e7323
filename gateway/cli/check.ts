/**
 * `gateway check [--data-dir DIR] [--json]`: verifies a stopped gateway's store against the
 * invariants its header states (gateway/store/check.ts says which), read only. Problems go
 * to stdout, one sentence each, naming partition, seq, device or record.
 *
 * Exit codes: 0 consistent, 1 problems found, 2 usage, 3 the store is locked by a running
 * gateway, 4 the directory holds no gateway store or cannot be opened.
 */
import { ValidationError } from '../../protocol/index.ts'
import { checkReport } from '../store/check.ts'
import { openDataDir, StoreLockedError } from '../store/dlq-reader.ts'
import { storeDefaults } from '../store/config.ts'

export const CHECK_USAGE = `usage: gateway check [flags]

Verifies a stopped gateway's store: counters against the items on disk, evicted ranges,
the dead-letter counter, dedup windows against the items they must claim. Read only.

flags
  --data-dir DIR              the store (default ./data/gateway, env GATEWAY_DATA_DIR)
  --dedup-idle-forget-ms N    the gateway's setting (default 7 days, env GATEWAY_DEDUP_IDLE_FORGET_MS)
  --json                      the report as one JSON object

exit codes: 0 consistent, 1 problems found, 2 usage, 3 locked by a running gateway,
4 not a gateway store (or it cannot be opened)
`

export const CheckExit = { Clean: 0, Problems: 1, Usage: 2, Locked: 3, NotAStore: 4 } as const

function parse (argv: string[]): { flags: Record<string, string>, json: boolean, help: boolean } {
  const flags: Record<string, string> = {}
  let json = false
  let help = false
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!
    if (x === '--json') { json = true; continue }
    if (x === '--help' || x === '-h') { help = true; continue }
    const eq = x.indexOf('=')
    const name = x.startsWith('--') ? x.slice(2, eq > 0 ? eq : undefined) : ''
    if (name !== 'data-dir' && name !== 'dedup-idle-forget-ms') throw new ValidationError(name || x, `unknown argument ${x} (gateway check --help)`)
    const v = eq > 0 ? x.slice(eq + 1) : argv[++i]
    if (v === undefined) throw new ValidationError(name, `--${name} needs a value`)
    flags[name] = v
  }
  return { flags, json, help }
}

/** Runs the check; returns the exit code. */
export async function checkMain (argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  const out = (s: string): void => { process.stdout.write(s) }
  const err = (s: string): void => { process.stderr.write(s) }
  let a
  try { a = parse(argv) } catch (e) { err(`gateway check: ${(e as Error).message}\n`); return CheckExit.Usage }
  if (a.help) { out(CHECK_USAGE); return CheckExit.Clean }
  const dataDir = a.flags['data-dir'] ?? env.GATEWAY_DATA_DIR ?? './data/gateway'
  const idle = a.flags['dedup-idle-forget-ms'] ?? env.GATEWAY_DEDUP_IDLE_FORGET_MS ?? String(storeDefaults().dedupIdleForgetMs)
  if (!/^\d+$/.test(idle)) { err('gateway check: --dedup-idle-forget-ms must be an unsigned integer\n'); return CheckExit.Usage }
  let db
  try {
    db = (await openDataDir(dataDir)).db
  } catch (e) {
    err(`gateway check: ${(e as Error).message}\n`)
    return e instanceof StoreLockedError ? CheckExit.Locked : CheckExit.NotAStore
  }
  try {
    const r = await checkReport(db, { dedupIdleForgetMs: Number(idle) })
    if (!r.store) { err(`gateway check: ${dataDir} is not a gateway store\n`); return CheckExit.NotAStore }
    const s = r.summary
    if (a.json) out(JSON.stringify({ dataDir, ok: r.problems.length === 0, ...r }) + '\n')
    else for (const p of r.problems) out(`${p}\n`)
    err(`${dataDir}: ${s.partitions} partitions, ${s.items} items, ${s.deadLetters} dead letters, ${s.windows} dedup windows, ${s.evictedRanges} evicted ranges: ${r.problems.length === 0 ? 'consistent' : `${r.problems.length} problem${r.problems.length === 1 ? '' : 's'}`}\n`)
    return r.problems.length === 0 ? CheckExit.Clean : CheckExit.Problems
  } finally {
    await db.close()
  }
}
