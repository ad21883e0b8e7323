/**
 * Issue 20: `npm start -- --upstream mqtt` runs devices -> gateway -> Mosquitto -> ingest
 * (a throwaway Mosquitto on a free port) and audits like the HTTP path: Ctrl-C to the whole
 * process group (as from a terminal) stops the devices, the gateway drains through the
 * broker, the audit finds nothing lost or duplicated, the exit code is 0 and the broker is
 * stopped. Without Mosquitto, the error names the Debian package.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import { ROOT, tempDir, waitFor } from '../helpers/index.ts'
import { needTools } from '../helpers/tools.ts'

type Run = { proc: ChildProcess, out: () => string, exited: Promise<number | null> }

function npmStart (t: { after: (fn: () => unknown) => void }, args: string[], env: NodeJS.ProcessEnv = process.env): Run {
  const proc = spawn('npm', ['start', '--silent', '--', ...args], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env })
  let out = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : null))))
  t.after(() => { try { process.kill(-proc.pid!, 'SIGKILL') } catch {} })
  return { proc, out: () => out, exited }
}

const exitOf = (run: Run, ms: number): Promise<number | null | 'hung'> =>
  Promise.race([run.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), ms).unref())])

function portOpen (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

async function getJson (url: string): Promise<Record<string, unknown>> {
  const r = await fetch(url, { signal: AbortSignal.timeout(2000) })
  return await r.json() as Record<string, unknown>
}

test('npm start -- --upstream mqtt: devices -> gateway -> Mosquitto -> ingest, Ctrl-C drains, audits clean, exits 0', async (t) => {
  needTools('mosquitto')
  const run = npmStart(t, ['--data-dir', await tempDir(t), '--upstream', 'mqtt', '--devices', '5', '--rate', '5', '--progress', 'off', '--drain-timeout-s', '30'])
  const what = (s: string): string => `${s} in: ${run.out()}`
  const brokerPort = Number(await waitFor(() => /cloud +mqtt:\/\/127\.0\.0\.1:(\d+)/.exec(run.out())?.[1], { timeoutMs: 120_000, what: what('cloud broker url') }))
  const ingestUrl = await waitFor(() => /ingest +(http:\/\/127\.0\.0\.1:\d+)/.exec(run.out())?.[1], { timeoutMs: 120_000, what: what('ingest url') })
  const adminUrl = await waitFor(() => /admin (http:\/\/127\.0\.0\.1:\d+)\/status/.exec(run.out())?.[1], { timeoutMs: 120_000, what: what('gateway admin url') })
  // the gateway's upstream is the broker, not the ingest
  const status = await getJson(`${adminUrl}/status`) as { upstream: { url: string } }
  assert.equal(status.upstream.url, `mqtt://127.0.0.1:${brokerPort}`)
  await waitFor(async () => ((await getJson(`${ingestUrl}/v1/stats`)) as { stored: number }).stored >= 20, { timeoutMs: 120_000, what: 'readings stored at the ingest through the broker' })
  process.kill(-run.proc.pid!, 'SIGINT')
  const code = await exitOf(run, 120_000)
  assert.equal(code, 0, `exit ${code}; output:\n${run.out()}`)
  assert.match(run.out(), /lost 0, duplicated 0/)
  assert.doesNotMatch(run.out(), /did not drain/)
  await waitFor(async () => !(await portOpen(brokerPort)), { timeoutMs: 10_000, what: 'Mosquitto stopped after npm start exited' })
})

test('npm start -- --upstream mqtt without Mosquitto: exit 2, the message names the Debian package', async (t) => {
  const run = npmStart(t, ['--data-dir', await tempDir(t), '--upstream', 'mqtt', '--progress', 'off'], { ...process.env, MOSQUITTO_BIN: '/nonexistent/mosquitto' })
  const code = await exitOf(run, 60_000)
  assert.equal(code, 2, `exit ${code}; output:\n${run.out()}`)
  assert.match(run.out(), /mosquitto not found at \/nonexistent\/mosquitto: install Debian's package with `apt-get install -y mosquitto`/)
})
