/**
 * Login storm: a good device's PUBACK latency (QoS 1, `--durability power`, one
 * publish outstanding, paced) while a storm process keeps `--storm` connections sending
 * CONNECTs with a wrong password for a known user, each reconnecting as soon as it is
 * refused. scrypt runs on the libuv pool that LevelDB's writes and fsyncs share. Rows, same
 * run, same data:
 *
 *   quiet            defaults, no storm (the baseline)
 *   storm-unbounded  --auth-max-concurrent 64, back-off off: how the gateway behaved before
 *                    the gate (every CONNECT's scrypt at once)
 *   storm-gate       defaults (2 checks at once), back-off off: the gate alone
 *   storm-default    defaults (gate and per-address back-off)
 *
 * Then the timing of refusals: the median time to CONNACK for an unknown user name and for
 * a known one with a wrong password (sequential, interleaved), in the storm-gate gateway.
 *
 *   node --import tsx bench/login-storm.ts [--storm 60] [--window-s 8]
 *
 * Appends to bench/results/login-storm.jsonl; `npm run bench:results` renders it.
 */
import { randomUUID } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { encodeCbor } from '../protocol/index.ts'
import { execFileSync } from 'node:child_process'
import { helpText, num, parseFlags, type FlagSpec } from './lib/args.ts'
import { Histogram } from '../common/index.ts'
import { Cleanup } from './lib/procs.ts'
import { timedConnect } from './lib/mqtt-timing.ts'
import { appendRecord, gitSha, hostInfo } from './lib/results.ts'
import { ROOT } from './lib/systems.ts'

const FLAGS: FlagSpec = {
  storm: { type: 'number', default: 60, doc: 'concurrent wrong-password connections' },
  'window-s': { type: 'number', default: 8, doc: 'measurement window per row' },
  rate: { type: 'number', default: 50, doc: 'good device publishes/s' },
  'timing-n': { type: 'number', default: 15, doc: 'refusals timed per kind (unknown, known-wrong)' },
  'storm-port': { type: 'number', doc: 'internal: run as the storm process against this port' }
}

const connectOnce = timedConnect

/** The gateway's own hash (bench/ imports protocol only): `gateway --hash-password`, password on stdin. */
function hashPassword (password: string): string {
  return execFileSync(process.execPath, ['--import', 'tsx', join(ROOT, 'gateway/main.ts'), '--hash-password'], { input: password, cwd: ROOT, encoding: 'utf8' }).trim()
}

async function stormProcess (port: number, n: number): Promise<void> {
  let attempts = 0
  const loop = async (i: number): Promise<void> => {
    for (;;) { await connectOnce(port, { clientId: `storm-${i}`, username: 'sensor-1', password: 'wrong' }); attempts++ }
  }
  setInterval(() => process.stdout.write(JSON.stringify({ type: 'storm', attempts }) + '\n'), 1000)
  for (let i = 0; i < n; i++) void loop(i)
}

type Row = { system: string, args: string[], storm: boolean }

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(helpText(FLAGS) + '\n'); return }
  if (f.get('storm-port') !== undefined) { await stormProcess(num(f, 'storm-port'), num(f, 'storm')); return }
  const stormN = num(f, 'storm')
  const windowS = num(f, 'window-s')
  const rate = num(f, 'rate')
  const cleanup = new Cleanup()
  const dir = cleanup.tempDir('bench-login-')
  const authFile = join(dir, 'auth.json')
  writeFileSync(authFile, JSON.stringify({ devices: { 'sensor-1': hashPassword('s1-pass'), good: hashPassword('good-pass') }, apps: {} }), { mode: 0o600 })
  const noBackoff = ['--login-backoff-base-ms', '0']
  const rows: Row[] = [
    { system: 'quiet', args: [], storm: false },
    { system: 'storm-unbounded', args: ['--auth-max-concurrent', '64', '--auth-max-queued', '100000', ...noBackoff], storm: true },
    { system: 'storm-gate', args: noBackoff, storm: true },
    { system: 'storm-default', args: [], storm: true }
  ]
  const runId = randomUUID()
  const command = `node --import tsx bench/login-storm.ts ${process.argv.slice(2).join(' ')}`.trim()
  for (const row of rows) {
    const gw = cleanup.spawn('gateway', [process.execPath, '--import', 'tsx', join(ROOT, 'gateway/main.ts'), '--gateway-id', 'bench', '--data-dir', join(dir, row.system),
      '--auth', 'file', '--auth-file', authFile, '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--durability', 'power', ...row.args],
    { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'error' } })
    const ready = await gw.waitFor((o) => o.msg === 'ready', 60_000, 'gateway ready')
    const port = ready.mqttPort as number
    const dev = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'good', username: 'good', password: 'good-pass', reconnectPeriod: 0 })
    let attempts = 0
    let storm: ReturnType<Cleanup['spawn']> | undefined
    if (row.storm) {
      storm = cleanup.spawn('storm', [process.execPath, '--import', 'tsx', join(ROOT, 'bench/login-storm.ts'), '--storm-port', String(port), '--storm', String(stormN)], { cwd: ROOT })
      storm.onLine((_l, o) => { if (o?.type === 'storm') attempts = o.attempts as number })
      await storm.waitFor((o) => o.type === 'storm' && (o.attempts as number) > 0, 60_000, 'storm under way')
    }
    const h = new Histogram()
    const a0 = attempts
    const end = Date.now() + windowS * 1000
    let seq = 0
    while (Date.now() < end) {
      const t0 = performance.now()
      await dev.publishAsync('devices/good/readings', encodeCbor({ seq: ++seq, values: { t: 1 } }), { qos: 1 })
      const ms = performance.now() - t0
      h.recordMs(ms)
      await new Promise((r) => setTimeout(r, Math.max(0, 1000 / rate - ms)))
    }
    const refusalsPerSec = (attempts - a0) / windowS
    let timing: { unknownMs: number, knownMs: number } | undefined
    if (row.system === 'storm-gate') {
      storm?.child.kill('SIGKILL')
      await storm?.exited
      const med = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
      const unknown: number[] = []
      const known: number[] = []
      for (let i = 0; i < num(f, 'timing-n'); i++) {
        unknown.push(await connectOnce(port, { clientId: `u${i}`, username: `nobody-${i}`, password: 'wrong' }))
        known.push(await connectOnce(port, { clientId: 'sensor-1', username: 'sensor-1', password: 'wrong' }))
      }
      timing = { unknownMs: med(unknown), knownMs: med(known) }
    }
    storm?.child.kill('SIGKILL')
    await dev.endAsync()
    await gw.stop('SIGTERM', 10_000)
    const s = h.summary()
    const rec = {
      scenario: 'login-storm', kind: 'result' as const, runId, ts: new Date().toISOString(), gitSha: gitSha(), node: process.version, host: hostInfo('not pinned'),
      system: row.system, params: { storm: row.storm ? stormN : 0, windowS, rate, durability: 'power' },
      p50Ms: s.p50Ms, p99Ms: s.p99Ms, p999Ms: s.p999Ms, maxMs: s.maxMs, publishes: s.count, refusalsPerSec, ...timing, command
    }
    appendRecord('login-storm.jsonl', rec)
    process.stdout.write(`${row.system.padEnd(16)} PUBACK p50 ${s.p50Ms.toFixed(1)} p99 ${s.p99Ms.toFixed(1)} max ${s.maxMs.toFixed(1)} ms (${s.count} publishes), storm refusals ${refusalsPerSec.toFixed(0)}/s` +
      (timing ? `; refusal time median: unknown user ${timing.unknownMs.toFixed(1)} ms, known user wrong password ${timing.knownMs.toFixed(1)} ms` : '') + '\n')
  }
  cleanup.killAll()
}

main().catch((err: Error) => { process.stderr.write(`login-storm bench failed: ${err.stack ?? err.message}\n`); process.exit(1) })
