/**
 * Child processes and /proc sampling for the bench orchestrators. Every process and temp
 * dir is registered with a `Cleanup`, which kills and removes them on normal exit, error,
 * SIGINT and SIGTERM: a benchmark must never leave a broker listening or a data dir behind.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

export type Exit = { code: number | null, signal: NodeJS.Signals | null }

export class Proc {
  readonly child: ChildProcess
  readonly pid: number
  /** Last stdout lines (JSON parsed when possible), bounded. */
  readonly tail: string[] = []
  readonly stderrTail: string[] = []
  readonly exited: Promise<Exit>
  exit: Exit | undefined
  private listeners: ((line: string, obj: Record<string, unknown> | null) => void)[] = []

  constructor (readonly name: string, readonly argv: string[], opts: { cwd?: string, env?: NodeJS.ProcessEnv, echo?: boolean }) {
    this.child = spawn(argv[0]!, argv.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    if (this.child.pid === undefined) throw new Error(`${name}: spawn ${argv[0]} failed`)
    this.pid = this.child.pid
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => { this.exit = { code, signal }; resolve(this.exit) })
      this.child.on('error', (err) => { this.stderrTail.push(String(err)); this.exit = { code: -1, signal: null }; resolve(this.exit) })
    })
    // stdout is read to the end, whatever its volume, so a chatty child never blocks on a full pipe.
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      let obj: Record<string, unknown> | null = null
      if (line.startsWith('{')) { try { obj = JSON.parse(line) as Record<string, unknown> } catch { obj = null } }
      this.tail.push(line)
      if (this.tail.length > 50) this.tail.shift()
      if (opts.echo) process.stderr.write(`[${name}] ${line}\n`)
      for (const l of this.listeners) l(line, obj)
    })
    createInterface({ input: this.child.stderr! }).on('line', (line) => {
      this.stderrTail.push(line)
      if (this.stderrTail.length > 50) this.stderrTail.shift()
      if (opts.echo) process.stderr.write(`[${name}!] ${line}\n`)
    })
  }

  onLine (fn: (line: string, obj: Record<string, unknown> | null) => void): void { this.listeners.push(fn) }

  /** Resolves with the first stdout JSON line matching `pred`; rejects on exit or timeout. */
  waitFor (pred: (o: Record<string, unknown>) => boolean, timeoutMs: number, what: string): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      let done = false
      const timer = setTimeout(() => { if (!done) { done = true; reject(new Error(`${this.name}: no ${what} within ${timeoutMs} ms. ${this.describeTail()}`)) } }, timeoutMs)
      this.onLine((_l, o) => { if (!done && o && pred(o)) { done = true; clearTimeout(timer); resolve(o) } })
      void this.exited.then((e) => { if (!done) { done = true; clearTimeout(timer); reject(new Error(`${this.name} exited (${e.code ?? e.signal}) before ${what}. ${this.describeTail()}`)) } })
    })
  }

  describeTail (): string {
    return `stderr: ${this.stderrTail.slice(-5).join(' | ') || '-'}; stdout: ${this.tail.slice(-3).join(' | ') || '-'}`
  }

  /** `signal`, then SIGKILL after `graceMs`. Idempotent. */
  async stop (signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<Exit> {
    if (this.exit) return this.exit
    this.child.kill(signal)
    const timer = setTimeout(() => { if (!this.exit) this.child.kill('SIGKILL') }, graceMs)
    const e = await this.exited
    clearTimeout(timer)
    return e
  }
}

export class Cleanup {
  private procs = new Set<Proc>()
  private dirs = new Set<string>()
  private hooks: Array<() => void> = []
  private installed = false

  /** A synchronous undo step (unmount, detach...) run by killAll after the processes die and before the temp dirs go, last registered first. */
  atExit (fn: () => void): void {
    this.install()
    this.hooks.push(fn)
  }

  spawn (name: string, argv: string[], opts: { cwd?: string, env?: NodeJS.ProcessEnv, echo?: boolean } = {}): Proc {
    this.install()
    const p = new Proc(name, argv, opts)
    this.procs.add(p)
    void p.exited.then(() => this.procs.delete(p))
    return p
  }

  tempDir (prefix: string): string {
    this.install()
    const d = mkdtempSync(join(tmpdir(), prefix))
    this.dirs.add(d)
    return d
  }

  removeDir (d: string): void {
    rmSync(d, { recursive: true, force: true })
    this.dirs.delete(d)
  }

  /** Synchronous so it also runs from 'exit': SIGKILL every live child, remove every dir. */
  killAll (): void {
    for (const p of this.procs) if (!p.exit) { try { p.child.kill('SIGKILL') } catch { /* already gone */ } }
    this.procs.clear()
    for (const h of this.hooks.splice(0).reverse()) { try { h() } catch { /* best effort */ } }
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true })
    this.dirs.clear()
  }

  private install (): void {
    if (this.installed) return
    this.installed = true
    process.on('exit', () => this.killAll())
    const onSignal = (sig: NodeJS.Signals): void => {
      process.stderr.write(`\n${sig}: stopping children and removing temp dirs\n`)
      this.killAll()
      process.exit(sig === 'SIGINT' ? 130 : 143)
    }
    process.once('SIGINT', onSignal)
    process.once('SIGTERM', onSignal)
  }
}

/** Prefix that pins a command to one CPU core, or nothing when pinning is off. */
export function pinned (core: number | null, argv: string[]): string[] {
  return core === null ? argv : ['taskset', '-c', String(core), ...argv]
}

export function canPin (): boolean {
  return spawnSync('taskset', ['-c', '0', 'true']).status === 0
}

/** A port that was free a moment ago on 127.0.0.1 (for programs that cannot listen on 0). */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })
}

/** Resolves once a TCP connect to 127.0.0.1:port succeeds; bounded. */
export async function waitForPort (port: number, timeoutMs: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port })
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (!alive()) throw new Error(`process exited before listening on ${port}`)
    if (Date.now() > deadline) throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function statusKb (pid: number, field: 'VmRSS' | 'VmHWM'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'latin1'))
    return m ? Number(m[1]) : null
  } catch { return null }
}

export const rssKb = (pid: number): number | null => statusKb(pid, 'VmRSS')
export const hwmKb = (pid: number): number | null => statusKb(pid, 'VmHWM')

let clkTck: number | undefined
/** utime + stime of `pid` in seconds (from /proc/PID/stat), or null if it is gone. */
export function cpuSeconds (pid: number): number | null {
  clkTck ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1')
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ') // fields from #3 (state) on
    return (Number(fields[11]) + Number(fields[12])) / clkTck
  } catch { return null }
}

/**
 * CPU seconds of each of `pid`'s threads, summed by thread name (/proc/PID/task/TID/stat):
 * node's main thread is `node` (or the process title), V8's GC and compiler helpers
 * `V8 DefaultWorke`, libuv's pool `libuv-worker`; LevelDB's compaction thread and the
 * write path's fsync run where LevelDB puts them. Null if the process is gone.
 */
export function threadCpuSeconds (pid: number): Map<string, number> | null {
  clkTck ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100
  try {
    const out = new Map<string, number>()
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const s = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'latin1')
        const name = tid === String(pid) ? 'main' : s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'))
        const fields = s.slice(s.lastIndexOf(')') + 2).split(' ')
        out.set(name, (out.get(name) ?? 0) + (Number(fields[11]) + Number(fields[12])) / clkTck)
      } catch { /* the thread ended */ }
    }
    return out
  } catch { return null }
}

/** Samples VmRSS every `intervalMs` and keeps the peak. */
export class RssSampler {
  peakKb = 0
  samples = 0
  private timer: NodeJS.Timeout

  constructor (private readonly pid: number, intervalMs = 200) {
    this.sample()
    this.timer = setInterval(() => this.sample(), intervalMs)
  }

  sample (): void {
    const kb = rssKb(this.pid)
    if (kb === null) return
    this.samples++
    if (kb > this.peakKb) this.peakKb = kb
  }

  stop (): number {
    this.sample()
    clearInterval(this.timer)
    return this.peakKb
  }
}

export const exists = (p: string): boolean => existsSync(p)

/** Busy seconds per CPU core since boot (from /proc/stat). */
export function coreBusySeconds (): number[] {
  clkTck ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100
  const out: number[] = []
  try {
    for (const line of readFileSync('/proc/stat', 'latin1').split('\n')) {
      const m = /^cpu(\d+) (.*)$/.exec(line)
      if (!m) continue
      const v = m[2]!.trim().split(/\s+/).map(Number)
      // user + nice + system + steal; irq/softirq left out: loopback TCP work lands there
      // and is not charged to the processes whose traffic it is.
      out[Number(m[1])] = (v[0]! + v[1]! + v[2]! + (v[7] ?? 0)) / clkTck
    }
  } catch { /* not Linux */ }
  return out
}
