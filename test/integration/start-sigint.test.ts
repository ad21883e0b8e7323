/**
 * Issue 15, item 2: Ctrl-C in `npm start`. The terminal sends SIGINT to the whole
 * foreground process group (npm, sh, start.ts and, before the fix, the ingest and gateway
 * children, which died mid-way: the drain waited its 60 s, the audit's fetch failed, exit 2).
 * Here the group gets a real SIGINT, as from a terminal: the devices stop, the gateway
 * drains, the audit runs and the exit code is 0; a second Ctrl-C quits at once.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { ROOT, tempDir, waitFor } from '../helpers/index.ts'

type Run = { proc: ChildProcess, out: () => string, exited: Promise<number | null>, ingestUrl: () => Promise<string> }

function npmStart (t: { after: (fn: () => unknown) => void }, dataDir: string): Run {
  // npm itself, as a user runs it: it forwards the SIGINT it gets to start.ts a second time
  const proc = spawn('npm', ['start', '--silent', '--', '--data-dir', dataDir, '--devices', '5', '--rate', '5', '--progress', 'off', '--drain-timeout-s', '30'], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : null))))
  t.after(() => { try { process.kill(-proc.pid!, 'SIGKILL') } catch {} })
  const ingestUrl = async (): Promise<string> => (await waitFor(() => /ingest +(http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1], { timeoutMs: 120_000, what: `ingest url in: ${out}` }))
  return { proc, out: () => out, exited, ingestUrl }
}

async function stored (url: string): Promise<number> {
  const r = await fetch(`${url}/v1/stats`)
  return ((await r.json()) as { stored: number }).stored
}

async function portClosed (url: string): Promise<boolean> {
  try { await fetch(`${url}/v1/stats`, { signal: AbortSignal.timeout(1000) }); return false } catch { return true }
}

test('Ctrl-C (SIGINT to the process group) in npm start drains, audits and exits 0', async (t) => {
  const run = npmStart(t, await tempDir(t))
  const url = await run.ingestUrl()
  await waitFor(async () => (await stored(url)) >= 10, { timeoutMs: 120_000, what: 'readings stored at the ingest' })
  process.kill(-run.proc.pid!, 'SIGINT')
  const code = await Promise.race([run.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 120_000).unref())])
  assert.equal(code, 0, `exit ${code}; output:\n${run.out()}`)
  assert.match(run.out(), /lost 0, duplicated 0/)
  assert.doesNotMatch(run.out(), /did not drain/)
  // a cold start used to print nothing for up to 15 s: each step is announced before it runs
  const out = run.out()
  for (const [step, done] of [['starting the ingest', 'ingest   http://'], ['starting the gateway', 'gateway  mqtt mqtt://']] as const) {
    assert.ok(out.includes(step) && out.indexOf(step) < out.indexOf(done), `"${step}" before "${done}" in:\n${out}`)
  }
  // the simulator's words: generated readings and published packets, not "sent"
  assert.match(out, /^generated \d+, published \d+, acknowledged \d+, stored upstream/m)
  await waitFor(() => portClosed(url), { timeoutMs: 10_000, what: 'ingest stopped after npm start exited' })
})

test('a second Ctrl-C in npm start quits at once', async (t) => {
  const run = npmStart(t, await tempDir(t))
  const url = await run.ingestUrl()
  process.kill(-run.proc.pid!, 'SIGINT')
  await waitFor(() => run.out().includes('stopping the devices'), { what: 'first Ctrl-C acknowledged' })
  await new Promise((r) => setTimeout(r, 700)) // past the window in which npm's forwarded copy is folded into the first
  const t0 = Date.now()
  process.kill(-run.proc.pid!, 'SIGINT')
  const code = await Promise.race([run.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000).unref())])
  assert.notEqual(code, 'hung', `still running 10 s after the second Ctrl-C:\n${run.out()}`)
  assert.notEqual(code, 0)
  assert.ok(Date.now() - t0 < 10_000)
  await waitFor(() => portClosed(url), { timeoutMs: 10_000, what: 'ingest stopped after the second Ctrl-C' })
})
