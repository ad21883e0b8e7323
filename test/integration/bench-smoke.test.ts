/**
 * Smoke test of the intake benchmark harness (bench/loadgen.ts against a bare Aedes child,
 * common/histogram.ts), so the harness cannot rot between benchmark runs. It checks the
 * result's shape and internal consistency, never performance numbers.
 */
import { strict as assert } from 'node:assert'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { test } from 'node:test'
import { Histogram } from '../../common/index.ts'
import type { LoadResult } from '../../bench/lib/types.ts'
import { ROOT, spawnCli } from '../helpers/index.ts'

async function runLoadgen (t: { after: (fn: () => unknown) => void }, args: string[]): Promise<{ result: LoadResult, phases: string[] }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/loadgen.ts'), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
  let out = ''
  let err = ''
  proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`loadgen did not finish in 8 s: ${err}`)) }, 8000)
    proc.on('exit', (c) => { clearTimeout(timer); resolve(c) })
  })
  assert.equal(code, 0, `loadgen exit code (stderr: ${err})`)
  const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
  const result = lines.find((l) => l.type === 'result') as LoadResult | undefined
  assert.ok(result, `no result line in: ${out}`)
  return { result, phases: lines.filter((l) => l.type === 'phase').map((l) => String(l.phase)) }
}

function assertSane (r: LoadResult): void {
  assert.ok(r.msgsPerSec > 0, 'msgs/s > 0')
  assert.ok(r.windowAcked > 0 && r.windowAcked <= r.acked && r.acked <= r.sent, 'acked counts consistent')
  assert.equal(r.connected, r.connections, 'every connection up')
  const l = r.latency
  assert.ok(l.count > 0, 'latency samples recorded')
  assert.ok(l.minMs <= l.p50Ms && l.p50Ms <= l.p99Ms && l.p99Ms <= l.p999Ms && l.p999Ms <= l.maxMs, `percentiles ordered: ${JSON.stringify(l)}`)
  assert.deepEqual(r.errors, { connect: 0, socket: 0, disconnects: 0, unacked: 0, outOfOrderAcks: 0, unexpectedAcks: 0, skipped: 0 })
}

test('loadgen closed loop against bare Aedes yields a sane result line', async (t) => {
  const broker = await spawnCli(t, 'bench/lib/aedes-broker.ts', [])
  const port = String(broker.ready.mqttPort)
  const { result, phases } = await runLoadgen(t, ['--port', port, '--connections', '5', '--inflight', '4', '--duration-s', '1', '--warmup-s', '0.2', '--drain-timeout-s', '2'])
  assert.deepEqual(phases, ['warmup', 'measure', 'drain'])
  assert.equal(result.mode, 'closed')
  assert.equal(result.inflight, 4)
  assertSane(result)
})

test('loadgen open loop never sends more than its schedule', async (t) => {
  const broker = await spawnCli(t, 'bench/lib/aedes-broker.ts', [])
  const { result } = await runLoadgen(t, ['--port', String(broker.ready.mqttPort), '--connections', '10', '--rate', '200', '--duration-s', '1', '--warmup-s', '0.2', '--drain-timeout-s', '2'])
  assert.equal(result.mode, 'open')
  assertSane(result)
  assert.ok(result.windowSent <= 200 * 1 + 5, `sent ${result.windowSent} in a 1 s window at 200/s`)
})

test('histogram percentiles are within one sub-bucket of the truth', () => {
  const h = new Histogram()
  assert.equal(h.summary().p99Ms, 0)
  for (let us = 1; us <= 100_000; us++) h.recordMs(us / 1000)
  const s = h.summary()
  assert.equal(s.count, 100_000)
  const near = (got: number, want: number): void => assert.ok(Math.abs(got - want) / want <= 0.01, `${got} vs ${want}`)
  near(s.p50Ms, 50)
  near(s.p99Ms, 99)
  near(s.p999Ms, 99.9)
  near(s.meanMs, 50)
  assert.equal(s.minMs, 0.001)
  assert.equal(s.maxMs, 100)
  for (let i = 0; i < 3000; i++) assert.ok(Histogram.indexOf(Math.floor(Histogram.valueOf(i))) === i, `bucket ${i} round-trips`)
})

test('live devices (bench/drain.ts --live-devices) publish at their rate and report PUBACK latency since SIGUSR1', async (t) => {
  const broker = await spawnCli(t, 'bench/lib/aedes-broker.ts', [])
  const live = await spawnCli(t, 'bench/lib/live-devices.ts', ['--port', String(broker.ready.mqttPort), '--connections', '5', '--rate', '200'])
  await new Promise((r) => setTimeout(r, 300))
  live.proc.kill('SIGUSR1')
  await new Promise((r) => setTimeout(r, 1000))
  live.proc.kill('SIGTERM')
  const exit = await live.exited
  assert.equal(exit.code, 0, `live-devices exit (stderr: ${live.stderr.join(' | ')})`)
  const done = live.lines.find((l) => l.msg === 'done') as { sent: number, acked: number, count: number, skipped: number, disconnects: number, unacked: number, windowS: number, p50Ms: number, p99Ms: number, maxMs: number } | undefined
  assert.ok(done, `no done line in ${JSON.stringify(live.lines)}`)
  assert.ok(done.sent >= 100 && done.sent <= 200 * done.windowS + 5, `sent ${done.sent} in ${done.windowS} s at 200/s`)
  assert.equal(done.acked, done.sent, 'every reading sent since SIGUSR1 acked')
  assert.equal(done.count, done.acked, 'one latency per acked reading')
  assert.deepEqual([done.skipped, done.disconnects, done.unacked], [0, 0, 0])
  assert.ok(done.p50Ms <= done.p99Ms && done.p99Ms <= done.maxMs, `percentiles ordered: ${JSON.stringify(done)}`)
})
