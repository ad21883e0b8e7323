/** Running a real CLI to completion (startup failures, exit codes). */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { ROOT } from './index.ts'

/** Runs the CLI to completion; resolves with exit code, stderr and elapsed ms, or null code if killed at `limitMs`. */
export function runCli (t: { after: (fn: () => unknown) => void }, entry: string, args: string[], limitMs: number, opts: { env?: Record<string, string>, uid?: number, gid?: number } = {}): Promise<{ code: number | null, stderr: string, stdout: string, ms: number }> {
  const t0 = Date.now()
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, entry), ...args], { cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], uid: opts.uid, gid: opts.gid })
  let stderr = ''
  let stdout = ''
  proc.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  proc.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  const timer = setTimeout(() => proc.kill('SIGKILL'), limitMs)
  t.after(() => { clearTimeout(timer); proc.kill('SIGKILL') })
  return new Promise((resolve) => proc.on('exit', (code) => { clearTimeout(timer); resolve({ code, stderr, stdout, ms: Date.now() - t0 }) }))
}
