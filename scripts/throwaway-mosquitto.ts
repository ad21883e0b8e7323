/**
 * A throwaway Mosquitto 2.0 (Debian's `mosquitto` package, /usr/sbin/mosquitto) as the cloud
 * broker of the MQTT upstream: for the tests, the benches and `npm start -- --upstream mqtt`.
 * Its own config file in a directory of the caller's, one listener on 127.0.0.1 and a free
 * port, anonymous clients (loopback only), persistence off unless asked for (a restart test).
 * `stop()` is idempotent; the caller owns the directory.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { EdgeError } from '../protocol/index.ts'

export const MOSQUITTO = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto'
export const haveMosquitto = existsSync(MOSQUITTO)

/** Mosquitto is not installed: `npm start -- --upstream mqtt`, a test or a bench needing it fails with this. */
export class MosquittoMissingError extends EdgeError {
  static override readonly code = 'EDGE_ERR_MOSQUITTO_MISSING'
  override name = 'MosquittoMissingError'
  constructor (message: string, opts: { cause?: unknown } = {}) {
    super(message, { ...opts, retryable: false })
  }
}

export type MosquittoOptions = {
  /** where mosquitto.conf (and the persistence file) go; must exist */
  dir: string
  /** 0 or absent: a free port */
  port?: number
  persistence?: boolean
  /** more config lines, appended */
  extra?: string[]
  /** a TLS listener: cafile, certfile, keyfile, require_certificate... (these apply to it) */
  tlsListener?: string[]
  /** how long to wait for the port to accept connections */
  startTimeoutMs?: number
  /** its own process group, so a terminal's Ctrl-C reaches only the caller (`npm start`) */
  detached?: boolean
}

async function freePort (): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve, reject) => { srv.once('error', reject); srv.listen(0, '127.0.0.1', resolve) })
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

async function waitForPort (port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port })
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (!alive()) throw new Error(`mosquitto exited before listening on ${port}`)
    if (Date.now() > deadline) throw new Error(`mosquitto not listening on 127.0.0.1:${port} after ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

export class ThrowawayMosquitto {
  /** stderr of the broker (errors and warnings), for a failure message */
  readonly log: string[] = []
  private alive = true
  private readonly exited: Promise<void>

  private constructor (readonly proc: ChildProcess, readonly port: number, readonly dir: string) {
    this.exited = new Promise<void>((resolve) => proc.on('exit', () => { this.alive = false; resolve() }))
    proc.stderr!.on('data', (b: Buffer) => this.log.push(b.toString()))
  }

  get url (): string { return `mqtt://127.0.0.1:${this.port}` }

  static async start (opts: MosquittoOptions): Promise<ThrowawayMosquitto> {
    if (!existsSync(MOSQUITTO)) throw new MosquittoMissingError(`mosquitto not found at ${MOSQUITTO}: install Debian's package with \`apt-get install -y mosquitto\` (or set MOSQUITTO_BIN)`)
    const port = opts.port || await freePort()
    const conf = join(opts.dir, 'mosquitto.conf')
    await writeFile(conf, [
      `listener ${port} 127.0.0.1`,
      ...(opts.tlsListener ?? []),
      'allow_anonymous true',
      // started as root, mosquitto drops to user mosquitto, who cannot read our 0700 temp dirs
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      `persistence ${opts.persistence ? 'true' : 'false'}`,
      ...(opts.persistence ? [`persistence_location ${opts.dir}/`, 'autosave_interval 1'] : []),
      // Nagle off for the broker's own writes (forwarded batches, results): see common/mqtt-nodelay.ts
      'set_tcp_nodelay true',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      ...(opts.extra ?? []),
      ''
    ].join('\n'))
    const proc = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'], detached: opts.detached ?? false })
    const m = new ThrowawayMosquitto(proc, port, opts.dir)
    proc.on('error', (err) => m.log.push(`spawn ${MOSQUITTO}: ${err.message}\n`))
    try {
      await waitForPort(port, opts.startTimeoutMs ?? 10_000, () => m.alive)
    } catch (err) {
      await m.kill()
      throw new Error(`${(err as Error).message}: ${m.log.join('').slice(0, 2000)}`, { cause: err })
    }
    return m
  }

  /** Sends `signal` (default SIGKILL) and resolves once the broker has exited. */
  async kill (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (!this.alive) return
    this.proc.kill(signal)
    await this.exited
  }

  /** SIGTERM (mosquitto saves its persistence file), SIGKILL after `timeoutMs`. */
  async stop (timeoutMs = 5000): Promise<void> {
    if (!this.alive) return
    this.proc.kill('SIGTERM')
    let timer: NodeJS.Timeout | undefined
    const late = await Promise.race([this.exited.then(() => false), new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), timeoutMs) })])
    clearTimeout(timer)
    if (late) await this.kill('SIGKILL')
  }
}
