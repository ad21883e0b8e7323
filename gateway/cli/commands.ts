/**
 * `gateway commands list --data-dir DIR [--device ID] [--json]`: the commands a stopped
 * gateway holds (gateway/commands/store.ts records), one line each (or one JSON document).
 * Exit 0 listed, 2 usage, 3 the store is in use (a running gateway: see /status), 4 not a store.
 */
import { readCommandRecords, stateOf, isTombstone } from '../commands/store.ts'
import { openDataDir, StoreLockedError } from '../store/dlq-reader.ts'

export const COMMANDS_USAGE = `usage: gateway commands list [--data-dir DIR] [--device ID] [--json]

Lists the commands to devices a stopped gateway holds: id, device, n, name, state, the
state changes not yet acknowledged by the ingest, expiresAt. Finished and reported
commands (kept until their expiresAt) are marked "finished".

exit: 0 listed, 2 usage, 3 the store is in use (a running gateway: see /status),
4 not a gateway store (or it cannot be opened)
`

export async function commandsMain (argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  const out = (s: string): void => { process.stdout.write(s) }
  const err = (s: string): void => { process.stderr.write(s) }
  if (argv.includes('--help') || argv.includes('-h')) { out(COMMANDS_USAGE); return 0 }
  if (argv[0] !== 'list') { err(`gateway commands: unknown subcommand ${argv[0] ?? '(none)'}\n${COMMANDS_USAGE}`); return 2 }
  const flags: Record<string, string> = {}
  let json = false
  const rest = argv.slice(1)
  for (let i = 0; i < rest.length; i++) {
    const x = rest[i]!
    if (x === '--json') { json = true; continue }
    const eq = x.indexOf('=')
    const name = x.startsWith('--') ? x.slice(2, eq > 0 ? eq : undefined) : ''
    if (name !== 'data-dir' && name !== 'device') { err(`gateway commands: unknown argument ${x}\n`); return 2 }
    const v = eq > 0 ? x.slice(eq + 1) : rest[++i]
    if (v === undefined) { err(`gateway commands: --${name} needs a value\n`); return 2 }
    flags[name] = v
  }
  const dataDir = flags['data-dir'] ?? env.GATEWAY_DATA_DIR ?? './data/gateway'
  let db
  try {
    db = (await openDataDir(dataDir)).db
  } catch (e) {
    err(`gateway commands: ${(e as Error).message}\n`)
    return e instanceof StoreLockedError ? 3 : 4
  }
  try {
    const { records, unreadable } = await readCommandRecords(db)
    const rows = records
      .filter((r) => flags.device === undefined || r.cmd.device === flags.device)
      .sort((a, b) => a.cmd.device < b.cmd.device ? -1 : a.cmd.device > b.cmd.device ? 1 : a.cmd.n - b.cmd.n)
      .map((r) => ({ id: r.cmd.id, device: r.cmd.device, n: r.cmd.n, name: r.cmd.name, state: stateOf(r), finished: isTombstone(r), unreported: r.t.length - r.reported, history: r.t.map(([state, at]) => ({ state, at })), expiresAt: r.cmd.expiresAt }))
    if (json) out(JSON.stringify({ dataDir, commands: rows, unreadable }) + '\n')
    else for (const r of rows) out(`${r.id}\t${r.device}\tn=${r.n}\t${r.name}\t${r.finished ? 'finished' : r.state}\tunreported=${r.unreported}\texpires=${new Date(r.expiresAt).toISOString()}\n`)
    if (unreadable.length) err(`gateway commands: ${unreadable.length} unreadable record(s): ${unreadable.slice(0, 5).join(', ')} (gateway check names them)\n`)
    return 0
  } finally {
    await db.close()
  }
}
