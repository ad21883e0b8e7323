/** Running a real CLI to completion (startup failures, exit codes). */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { ROOT } from './index.ts'

export type CliRun = {
  code: number | null
  stderr: string
  stdout: string
  /** ms from spawn to exit */
  ms: number
  /** ms from spawn to the first output matching `opts.mark` (null: never seen) */
  markMs: number | null
}

/**
 * Runs the CLI to completion; resolves with exit code, output and timings, or a null code
 * if it was killed at `limitMs`. `mark` times an output line, so "exits promptly after X"
 * can be asserted without counting a loaded box's slow startup. `wrap` runs it under another
 * program (e.g. `['setpriv', ...]`), which must exec node in place (it gets the kill).
 */
export function runCli (t: { after: (fn: () => unknown) => void }, entry: string, args: string[], limitMs: number, opts: { env?: Record<string, string>, uid?: number, gid?: number, mark?: RegExp, wrap?: string[] } = {}): Promise<CliRun> {
  const t0 = Date.now()
  const argv = [process.execPath, '--import', 'tsx', join(ROOT, entry), ...args]
  const cmd = opts.wrap?.length ? [...opts.wrap, ...argv] : argv
  const proc = spawn(cmd[0]!, cmd.slice(1), { cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], uid: opts.uid, gid: opts.gid })
  let stderr = ''
  let stdout = ''
  let markMs: number | null = null
  const seen = (): void => { if (markMs === null && opts.mark?.test(stdout + stderr)) markMs = Date.now() - t0 }
  proc.stderr.on('data', (d: Buffer) => { stderr += d.toString(); seen() })
  proc.stdout.on('data', (d: Buffer) => { stdout += d.toString(); seen() })
  const timer = setTimeout(() => proc.kill('SIGKILL'), limitMs)
  t.after(() => { clearTimeout(timer); proc.kill('SIGKILL') })
  return new Promise((resolve) => proc.on('exit', (code) => { clearTimeout(timer); resolve({ code, stderr, stdout, ms: Date.now() - t0, markMs }) }))
}

/** `gateway dlq ARGS` run to completion (the dead-letter CLI; killed after 2 minutes). */
export function runDlq (t: { after: (fn: () => unknown) => void }, args: string[]): Promise<CliRun> {
  return runCli(t, 'gateway/main.ts', ['dlq', ...args], 120_000, { env: { LOG_LEVEL: 'warn' } })
}
