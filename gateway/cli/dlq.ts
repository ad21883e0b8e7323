/**
 * `gateway dlq list|show|export|replay|purge [flags]`: the dead-letter tools.
 *
 * On a stopped gateway's data dir (`--data-dir`, default ./data/gateway) the store is
 * opened directly; a running gateway holds its LevelDB lock and the command refuses,
 * pointing to `--admin URL`, which runs the same operation through the running gateway's
 * admin API (counted in its /metrics). Data goes to stdout (a table, JSON or JSON lines),
 * logs (pino JSON) and summaries to stderr.
 */
import { createWriteStream } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { pino, type Logger } from 'pino'
import { EdgeError, ValidationError } from '../../protocol/index.ts'
import { DeadLetterTools, parseFilter, type DeadLetterView } from '../dlq/index.ts'
import { openDataDir, readDlqCount, StoreLockedError } from '../store/dlq-reader.ts'
import { storeDefaults } from '../store/config.ts'
import { Store } from '../store/index.ts'

export const DLQ_USAGE = `usage: gateway dlq <command> [flags]

commands
  list                 one line per record: id, time, kind, device, reason (--json: JSON lines)
  show ID              one record in full (decoded reading, raw bytes in base64)
  export               every matching record as JSON lines (--out FILE, default stdout)
  replay               re-validate matching records and queue the valid ones again
  purge                delete matching records (needs a filter or --all)

where
  --data-dir DIR       a stopped gateway's store (default ./data/gateway, env GATEWAY_DATA_DIR)
  --admin URL          a running gateway's admin server instead (env GATEWAY_ADMIN_URL)
  --admin-token T, --admin-token-file F   its token, when it is not bound to loopback

filters (all commands but show)
  --device ID|PATTERN  device id, * matches anything (e.g. 'sensor-*')
  --reason TEXT        substring of the reason, any case
  --kind K             payload (invalid at intake), item (rejected upstream), too-old, unreadable
  --since T, --until T ISO time, ms since epoch, or an age: 90s, 15m, 2h, 7d
  --id N[,N...]        record ids

other
  --limit N, --after ID   list: page size (100) and the id to continue after
  --dry-run               replay, purge: report what would happen, change nothing
  --all                   purge: every record (no filter)
  --max-payload-bytes N   replay on a data dir: the gateway's --max-payload-bytes (16384)
`

/**
 * The running gateway's admin API did not answer (no HTTP status at all). fetch says only
 * "fetch failed"; the network error (ECONNREFUSED, ENOTFOUND...) is its cause, so the
 * message names the URL and that code.
 */
export class AdminUnreachableError extends EdgeError {
  static override readonly code = 'EDGE_ERR_ADMIN_UNREACHABLE'
  override name = 'AdminUnreachableError'
  /** the network error's code, e.g. ECONNREFUSED (undefined when there is none) */
  readonly errno: string | undefined
  constructor (readonly url: string, cause: unknown) {
    const c = (cause as { cause?: { code?: string, message?: string } }).cause
    const why = c?.code !== undefined ? `${c.code}${c.message ? ` (${c.message})` : ''}` : (c?.message ?? (cause as Error).message)
    super(`cannot reach the gateway's admin API at ${url}: ${why}; is the gateway running, with its --admin-port there? (on a stopped gateway use --data-dir DIR)`, { cause, retryable: true })
    this.errno = c?.code
  }
}

type Args = { cmd: string, pos: string[], flags: Record<string, string>, bools: Set<string> }

const BOOL_FLAGS = new Set(['json', 'dry-run', 'all', 'help'])
const VALUE_FLAGS = new Set(['data-dir', 'admin', 'admin-token', 'admin-token-file', 'device', 'reason', 'kind', 'since', 'until', 'id', 'limit', 'after', 'out', 'max-payload-bytes'])

export function parseArgs (argv: string[]): Args {
  // `gateway dlq --help` (a flag first): no command, every word a flag
  const [cmd = '', ...rest] = argv[0]?.startsWith('--') ? ['', ...argv] : argv
  const a: Args = { cmd, pos: [], flags: {}, bools: new Set() }
  for (let i = 0; i < rest.length; i++) {
    const x = rest[i]!
    if (!x.startsWith('--')) { a.pos.push(x); continue }
    const eq = x.indexOf('=')
    const name = x.slice(2, eq > 0 ? eq : undefined)
    if (BOOL_FLAGS.has(name)) { a.bools.add(name); continue }
    if (!VALUE_FLAGS.has(name)) throw new ValidationError(name, `unknown flag --${name} (gateway dlq --help)`)
    const v = eq > 0 ? x.slice(eq + 1) : rest[++i]
    if (v === undefined) throw new ValidationError(name, `--${name} needs a value`)
    a.flags[name] = v
  }
  return a
}

const filterOf = (a: Args): Record<string, string | undefined> => ({ device: a.flags.device, reason: a.flags.reason, kind: a.flags.kind, since: a.flags.since, until: a.flags.until, id: a.flags.id })

const line = (r: DeadLetterView): string => `${String(r.id).padStart(6)}  ${r.at}  ${r.kind.padEnd(8)}  ${(r.device ?? '?').padEnd(20)}  ${r.reason}`

/** The operations, over a local store or a running gateway's admin API. */
type Backend = {
  list: (filter: Record<string, string | undefined>, limit?: number, after?: number) => Promise<{ total: number, items: DeadLetterView[], next: number | null }>
  show: (id: number) => Promise<DeadLetterView | null>
  export: (filter: Record<string, string | undefined>) => AsyncIterable<string>
  replay: (filter: Record<string, string | undefined>, dryRun: boolean) => Promise<unknown>
  purge: (filter: Record<string, string | undefined>, dryRun: boolean, all: boolean) => Promise<unknown>
  close: () => Promise<void>
}

async function localBackend (dataDir: string, mutating: boolean, maxPayloadBytes: number, log: Logger): Promise<Backend> {
  const { db, partitions } = await openDataDir(dataDir)
  let store: Store | null = null
  let dlq: DeadLetterTools
  if (mutating) {
    await db.close()
    // the tool changes only what it is asked to: no quota drops while it works on the store
    store = await Store.open({ ...storeDefaults(), dataDir, partitions, durability: 'power', maxBufferItems: Number.MAX_SAFE_INTEGER, maxBufferBytes: Number.MAX_SAFE_INTEGER, fullPolicy: 'block', maxDlqItems: Number.MAX_SAFE_INTEGER, maxDlqBytes: Number.MAX_SAFE_INTEGER }, log)
    dlq = new DeadLetterTools(store, { maxPayloadBytes, via: 'cli' }, log)
  } else {
    // read-only: no recovery, no writes
    dlq = new DeadLetterTools({ db, dlqCount: await readDlqCount(db) }, { maxPayloadBytes, via: 'cli' }, log)
  }
  return {
    list: (f, limit, after) => dlq.list(parseFilter(f), { limit, afterId: after }),
    show: (id) => dlq.show(id),
    export: (f) => dlq.export(parseFilter(f)),
    replay: (f, dryRun) => dlq.replay(parseFilter(f), { dryRun }),
    purge: (f, dryRun, all) => dlq.purge(parseFilter(f), { dryRun, all }),
    close: async () => { if (store) await store.close(); else await db.close() }
  }
}

function adminBackend (base: string, token: string | undefined): Backend {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {}
  let url: URL
  try { url = new URL(base) } catch { throw new ValidationError('admin', `--admin ${JSON.stringify(base)} is not a URL (e.g. http://127.0.0.1:8081)`) }
  const call = async (method: string, path: string, body?: unknown): Promise<Response> => {
    let res: Response
    try {
      res = await fetch(new URL(path, url), {
        method,
        headers: { ...headers, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {})
      })
    } catch (e) {
      // fetch says only "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND...) is its cause
      throw new AdminUnreachableError(url.origin, e)
    }
    if (!res.ok && res.status !== 404) {
      const text = await res.text()
      let msg = text
      try { msg = (JSON.parse(text) as { message?: string }).message ?? text } catch {}
      throw new Error(`${method} ${path}: ${res.status} ${msg}`)
    }
    return res
  }
  const qs = (f: Record<string, string | undefined>, extra: Record<string, string | undefined> = {}): string => {
    const p = new URLSearchParams()
    for (const [k, v] of Object.entries({ ...f, ...extra })) if (v !== undefined) p.set(k, v)
    const s = p.toString()
    return s ? `?${s}` : ''
  }
  const clean = (f: Record<string, string | undefined>): Record<string, string> => Object.fromEntries(Object.entries(f).filter(([, v]) => v !== undefined)) as Record<string, string>
  return {
    list: async (f, limit, after) => await (await call('GET', `/dlq${qs(f, { limit: limit?.toString(), after: after?.toString() })}`)).json() as Awaited<ReturnType<Backend['list']>>,
    show: async (id) => { const r = await call('GET', `/dlq/${id}`); return r.status === 404 ? null : await r.json() as DeadLetterView },
    export: async function * (f) {
      const r = await call('GET', `/dlq/export${qs(f)}`)
      const dec = new TextDecoder()
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) yield dec.decode(chunk, { stream: true })
    },
    replay: async (f, dryRun) => await (await call('POST', '/dlq/replay', { ...clean(f), dryRun })).json(),
    purge: async (f, dryRun, all) => await (await call('POST', '/dlq/purge', { ...clean(f), dryRun, all })).json(),
    close: async () => {}
  }
}

/** Runs the command; returns the exit code. */
export async function dlqMain (argv: string[], env: Record<string, string | undefined> = process.env): Promise<number> {
  const out = (s: string): void => { process.stdout.write(s) }
  const err = (s: string): void => { process.stderr.write(s) }
  let a: Args
  try { a = parseArgs(argv) } catch (e) { err(`gateway dlq: ${(e as Error).message}\n`); return 2 }
  if (a.bools.has('help') || a.cmd === '' || a.cmd === 'help') { out(DLQ_USAGE); return a.cmd === '' && !a.bools.has('help') ? 2 : 0 }
  if (!['list', 'show', 'export', 'replay', 'purge'].includes(a.cmd)) { err(`gateway dlq: unknown command ${JSON.stringify(a.cmd)}\n${DLQ_USAGE}`); return 2 }
  const log = pino({ level: env.LOG_LEVEL ?? 'info', base: { service: 'gateway-dlq' } }, pino.destination(2))
  const adminUrl = a.flags.admin ?? env.GATEWAY_ADMIN_URL
  let backend: Backend
  try {
    if (adminUrl) {
      const token = a.flags['admin-token-file'] ? (await readFile(a.flags['admin-token-file'], 'utf8')).trim() : a.flags['admin-token'] ?? env.GATEWAY_ADMIN_TOKEN
      backend = adminBackend(adminUrl, token)
    } else {
      const dataDir = a.flags['data-dir'] ?? env.GATEWAY_DATA_DIR ?? './data/gateway'
      const maxPayloadBytes = Number(a.flags['max-payload-bytes'] ?? env.GATEWAY_MAX_PAYLOAD_BYTES ?? 16384)
      backend = await localBackend(dataDir, a.cmd === 'replay' || a.cmd === 'purge', maxPayloadBytes, log)
    }
  } catch (e) {
    err(`gateway dlq: ${(e as Error).message}\n`)
    return e instanceof StoreLockedError ? 3 : e instanceof ValidationError ? 2 : 1
  }
  try {
    const f = filterOf(a)
    const int = (name: string): number | undefined => {
      const v = a.flags[name]
      if (v === undefined) return undefined
      if (!/^\d+$/.test(v)) throw new ValidationError(name, 'must be an unsigned integer')
      return Number(v)
    }
    switch (a.cmd) {
      case 'list': {
        const r = await backend.list(f, int('limit'), int('after'))
        if (a.bools.has('json')) for (const x of r.items) out(JSON.stringify(x) + '\n')
        else for (const x of r.items) out(line(x) + '\n')
        err(`${r.items.length} shown of ${r.total} dead letters${r.next !== null ? `; more: --after ${r.next}` : ''}\n`)
        return 0
      }
      case 'show': {
        const id = a.pos[0]
        if (id === undefined || !/^\d+$/.test(id)) { err('gateway dlq show: needs a record id (from dlq list)\n'); return 2 }
        const r = await backend.show(Number(id))
        if (!r) { err(`gateway dlq show: no record ${id}\n`); return 1 }
        out(JSON.stringify(r, null, 2) + '\n')
        return 0
      }
      case 'export': {
        const file = a.flags.out
        const dest: NodeJS.WritableStream = file ? createWriteStream(file) : process.stdout
        let n = 0
        for await (const chunk of backend.export(f)) {
          for (let i = chunk.indexOf('\n'); i >= 0; i = chunk.indexOf('\n', i + 1)) n++
          if (!dest.write(chunk)) await new Promise<void>((resolve) => dest.once('drain', () => resolve()))
        }
        if (file) await new Promise<void>((resolve, reject) => (dest as ReturnType<typeof createWriteStream>).end((e?: Error | null) => e ? reject(e) : resolve()))
        err(`exported ${n} records${file ? ` to ${file}` : ''}\n`)
        return 0
      }
      case 'replay': {
        const r = await backend.replay(f, a.bools.has('dry-run')) as { matched: number, replayed: number, wouldReplay?: number, invalidCount: number, bufferFull: boolean, dryRun: boolean }
        out(JSON.stringify(r) + '\n')
        err(`${r.dryRun ? `dry run: would replay ${r.wouldReplay ?? 0}` : `replayed ${r.replayed}`} of ${r.matched} matching records; ${r.invalidCount} still invalid (kept)${r.bufferFull ? '; stopped: buffer full' : ''}\n`)
        return 0
      }
      case 'purge': {
        const r = await backend.purge(f, a.bools.has('dry-run'), a.bools.has('all')) as { matched: number, purged: number, wouldPurge?: number, dryRun: boolean }
        out(JSON.stringify(r) + '\n')
        err(r.dryRun ? `dry run: would purge ${r.wouldPurge ?? 0} records; nothing deleted\n` : `purged ${r.purged} records\n`)
        return 0
      }
    }
    return 2
  } catch (e) {
    err(`gateway dlq ${a.cmd}: ${(e as Error).message}\n`)
    return e instanceof ValidationError ? 2 : 1
  } finally {
    await backend.close()
    log.flush()
  }
}
