/**
 * A throwaway PostgreSQL server for tests, benches and `npm start -- --sink postgres`: a
 * fresh cluster (initdb) in a temp dir, the postmaster spawned directly (so `kill9()` hits
 * the real postmaster) on 127.0.0.1 and a free port, with trust auth on loopback only.
 *
 * Binaries: Debian's `postgresql` package (/usr/lib/postgresql/<version>/bin, the highest
 * version found), or PG_BIN_DIR. PostgreSQL refuses to run as root, so when we are root
 * the cluster is owned by and the server runs as the `postgres` user the package creates.
 *
 * Durability settings are PostgreSQL's defaults (fsync on, synchronous_commit on): the
 * crash tests and the bench measure the real thing.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { chownSync, existsSync, readdirSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import { EdgeError } from '../protocol/index.ts'

/** The PostgreSQL server binaries (or the `postgres` user) are not installed: the test or bench using them fails with this. */
export class PostgresMissingError extends EdgeError {
  static override readonly code = 'EDGE_ERR_POSTGRES_MISSING'
  override name = 'PostgresMissingError'
  constructor (message: string, opts: { cause?: unknown } = {}) {
    super(message, { ...opts, retryable: false })
  }
}

function binDir (): string {
  if (process.env.PG_BIN_DIR) return process.env.PG_BIN_DIR
  const base = '/usr/lib/postgresql'
  const versions = existsSync(base) ? readdirSync(base).filter((v) => /^\d+$/.test(v) && existsSync(join(base, v, 'bin', 'postgres'))).sort((a, b) => Number(b) - Number(a)) : []
  if (versions.length === 0) {
    throw new PostgresMissingError('PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PG_BIN_DIR): install them with `apt-get install -y postgresql` (.ci/run does)')
  }
  return join(base, versions[0]!, 'bin')
}

function runAsIds (): { uid: number, gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim())
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim())
    return { uid, gid }
  } catch {
    throw new PostgresMissingError('running as root and there is no `postgres` user to run the server as (apt-get install -y postgresql creates it)')
  }
}

export async function freePort (): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve, reject) => { srv.once('error', reject); srv.listen(0, '127.0.0.1', resolve) })
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

export type ThrowawayOptions = { dir?: string, port?: number, log?: (line: string) => void }

export class ThrowawayPostgres {
  private proc: ChildProcess | null = null
  private exited: Promise<void> = Promise.resolve()
  private readonly output: string[] = []
  private stopped = false

  private constructor (
    readonly bin: string,
    readonly dataDir: string,
    readonly port: number,
    private readonly ids: { uid: number, gid: number } | undefined,
    private readonly ownsDir: string | null,
    private readonly log: (line: string) => void
  ) {}

  /** initdb + start. Throws PostgresMissingError when the binaries are not installed. */
  static async start (opts: ThrowawayOptions = {}): Promise<ThrowawayPostgres> {
    const bin = binDir()
    const ids = runAsIds()
    const root = opts.dir ?? await mkdtemp(join(tmpdir(), 'pg-'))
    if (ids) chownSync(root, ids.uid, ids.gid)
    const dataDir = join(root, 'data')
    const port = opts.port ?? await freePort()
    const srv = new ThrowawayPostgres(bin, dataDir, port, ids, opts.dir ? null : root, opts.log ?? (() => {}))
    if (!existsSync(join(dataDir, 'PG_VERSION'))) {
      try {
        execFileSync(join(bin, 'initdb'), ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync'], { stdio: 'pipe', ...(ids ?? {}) })
      } catch (err) {
        const e = err as { stderr?: Buffer }
        throw new Error(`initdb failed: ${e.stderr?.toString().slice(-500) ?? (err as Error).message}`, { cause: err })
      }
    }
    await srv.launch()
    return srv
  }

  /** Base URL of the server (database `postgres`), or of `db`. */
  url (db = 'postgres'): string { return `postgres://postgres@127.0.0.1:${this.port}/${db}` }

  get pid (): number | undefined { return this.proc?.pid }

  private async launch (): Promise<void> {
    this.stopped = false
    const args = ['-D', this.dataDir, '-p', String(this.port), '-k', this.dataDir, '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200', '-c', 'shared_buffers=64MB']
    const deadline = Date.now() + 30_000
    for (;;) {
      const proc = spawn(join(this.bin, 'postgres'), args, { stdio: ['ignore', 'pipe', 'pipe'], ...(this.ids ?? {}) })
      this.proc = proc
      const onLine = (b: Buffer): void => { for (const l of b.toString().split('\n')) if (l) { this.output.push(l); if (this.output.length > 200) this.output.shift(); this.log(l) } }
      proc.stdout!.on('data', onLine)
      proc.stderr!.on('data', onLine)
      let dead = false
      this.exited = new Promise<void>((resolve) => proc.once('exit', () => { dead = true; resolve() }))
      const up = await this.waitUp(() => dead, deadline)
      if (up) return
      // After a kill -9 the old backends may hold shared memory for a moment: try again.
      if (Date.now() > deadline) throw new Error(`postgres did not start: ${this.output.slice(-8).join(' | ')}`)
      await new Promise((r) => setTimeout(r, 200))
    }
  }

  private async waitUp (dead: () => boolean, deadline: number): Promise<boolean> {
    while (Date.now() < deadline) {
      if (dead()) return false
      const c = new pg.Client({ connectionString: this.url(), connectionTimeoutMillis: 2000 })
      c.on('error', () => {})
      try {
        await c.connect()
        await c.query('SELECT 1')
        await c.end()
        return true
      } catch {
        await c.end().catch(() => {})
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    return false
  }

  /** Creates a fresh database and returns its URL. */
  async createDatabase (name: string): Promise<string> {
    const c = new pg.Client({ connectionString: this.url() })
    await c.connect()
    try { await c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`) } finally { await c.end() }
    return this.url(name)
  }

  /** kill -9 of the postmaster (a crash), without restarting it. */
  async kill9 (): Promise<void> {
    const p = this.proc
    if (!p || p.exitCode !== null || p.signalCode !== null) return
    p.kill('SIGKILL')
    await this.exited
  }

  /** Starts the server again on the same data dir and port (crash recovery runs). */
  async restart (): Promise<void> {
    await this.launch()
  }

  /** Immediate shutdown (SIGQUIT stops the backends too), then removes the temp dir. Idempotent. */
  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    const p = this.proc
    if (p && p.exitCode === null && p.signalCode === null) {
      p.kill('SIGQUIT')
      const t = setTimeout(() => p.kill('SIGKILL'), 5000)
      await this.exited
      clearTimeout(t)
    }
    if (this.ownsDir) await rm(this.ownsDir, { recursive: true, force: true })
  }
}
