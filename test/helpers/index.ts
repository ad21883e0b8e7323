/** Shared test helpers: bounded waits, temp dirs, and child processes of the real CLIs. */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import type { TestContext } from 'node:test'

export const ROOT = resolve(import.meta.dirname, '..', '..')

export async function waitFor<T> (fn: () => T | Promise<T>, opts: { timeoutMs?: number, intervalMs?: number, what?: string } = {}): Promise<NonNullable<T>> {
  const timeoutMs = opts.timeoutMs ?? 10_000
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v) return v as NonNullable<T>
    } catch (err) { last = err }
    if (Date.now() > deadline) {
      throw new Error(`waitFor timed out after ${timeoutMs} ms${opts.what ? `: ${opts.what}` : ''}${last ? ` (last error: ${(last as Error).message})` : ''}`)
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 20))
  }
}

function childPids (pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number)
  } catch { return [] }
}

/** A temp dir removed after the test. */
export async function tempDir (t: TestContext | { after: (fn: () => unknown) => void }, prefix = 'gw-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

export type Child = {
  proc: ChildProcess
  /** The parsed `ready` log line. */
  ready: Record<string, unknown>
  /** Every JSON log line seen so far (non-JSON lines are kept as { raw }). */
  lines: Record<string, unknown>[]
  stderr: string[]
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  kill: (signal?: NodeJS.Signals) => Promise<void>
}

/**
 * Spawns `node --import tsx <entry> ...args` and resolves when it logs `ready`. The child
 * is SIGKILLed after the test unless it already exited.
 */
/**
 * Starts a CLI and waits for its `ready` line. `wrap` runs it under another program (e.g.
 * `['strace', '-f', ...]`); kill then signals the wrapped node process too (a tracer that
 * dies leaves its tracee running). `nodeArgs` go to node before the entry (V8 options,
 * preloads: gateway.ts `asDeployed`).
 */
export async function spawnCli (t: { after: (fn: () => unknown) => void }, entry: string, args: string[], opts: { env?: Record<string, string>, readyTimeoutMs?: number, wrap?: string[], nodeArgs?: string[] } = {}): Promise<Child> {
  const argv = [process.execPath, ...opts.nodeArgs ?? [], '--import', 'tsx', join(ROOT, entry), ...args]
  const cmd = opts.wrap?.length ? [...opts.wrap, ...argv] : argv
  const proc = spawn(cmd[0]!, cmd.slice(1), {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'info', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const lines: Record<string, unknown>[] = []
  const stderr: string[] = []
  let exitInfo: { code: number | null, signal: NodeJS.Signals | null } | undefined
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((res) => {
    proc.on('exit', (code, signal) => { exitInfo = { code, signal }; res(exitInfo) })
  })
  createInterface({ input: proc.stderr! }).on('line', (l) => { stderr.push(l); if (process.env.TEST_VERBOSE) console.error(`[${entry}] ${l}`) })
  let onReady: (v: Record<string, unknown>) => void = () => {}
  const readyP = new Promise<Record<string, unknown>>((res) => { onReady = res })
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    let o: Record<string, unknown>
    try { o = JSON.parse(l) as Record<string, unknown> } catch { o = { raw: l } }
    lines.push(o)
    if (process.env.TEST_VERBOSE) console.error(`[${entry}] ${l}`)
    if (o.msg === 'ready') onReady(o)
  })
  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (exitInfo) return
    if (opts.wrap?.length) {
      for (const pid of childPids(proc.pid!)) { try { process.kill(pid, signal) } catch {} }
    }
    proc.kill(signal)
    await exited
  }
  t.after(() => kill('SIGKILL'))
  const timeoutMs = opts.readyTimeoutMs ?? 20_000
  let timer: NodeJS.Timeout | undefined
  const ready = await Promise.race([
    readyP,
    exited.then((e) => { throw new Error(`${entry} exited (${e.code ?? e.signal}) before ready: ${stderr.slice(-5).join(' | ')} ${JSON.stringify(lines.slice(-3))}`) }),
    new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`${entry} not ready within ${timeoutMs} ms: ${stderr.slice(-5).join(' | ')}`)), timeoutMs) })
  ]).finally(() => clearTimeout(timer))
  return { proc, ready, lines, stderr, exited, kill }
}
