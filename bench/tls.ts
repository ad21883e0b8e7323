/**
 * TLS benchmark: what MQTT over TLS costs the gateway, against plain TCP on the same
 * gateway process in the same run.
 *
 *   node --import tsx bench/tls.ts [--connects 200] [--duration-s 8] [--connections 100] [--inflight 32]
 *
 * A throwaway CA and certificates are made with openssl (bench/lib/certs.ts). Two gateway
 * processes (`--durability process`, so fsync noise does not hide the TLS cost, pinned to
 * the broker core), each with both listeners:
 *   A  plain 1883-style listener + TLS listener (server certificate only)
 *   B  plain listener + TLS listener with `--tls-require-client-cert` (mTLS; CN = device id)
 * 1. Handshake cost: `--connects` sequential connections per listener, each TCP (+ TLS)
 *    handshake + CONNECT + CONNACK, then DISCONNECT: client-observed connect time (p50/p99)
 *    and the gateway's CPU time per connection over the whole phase.
 * 2. PUBACK throughput: bench/loadgen.ts (its own process, load core), closed loop
 *    `--connections` x `--inflight`, on the plain port and then on the TLS port of gateway A,
 *    then plain again (the median of the two plain runs is the baseline of the ratio).
 * Records go to bench/results/tls.jsonl; bench/update-results.ts renders bench/RESULTS.md.
 */
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import tls from 'node:tls'
import { bool, helpText, num, parseFlags, type FlagSpec } from './lib/args.ts'
import { makeCa, makeCert } from './lib/certs.ts'
import { Histogram } from '../common/index.ts'
import { connectPacket, DISCONNECT, FrameSplitter, PacketType } from './lib/mqtt-wire.ts'
import { canPin, Cleanup, cpuSeconds, pinned, RssSampler, type Proc } from './lib/procs.ts'
import { appendRecord, fmtInt, fmtMs, fmtRatio, gitSha, hostInfo } from './lib/results.ts'
import { commandLine, GATEWAY_MAIN, ROOT } from './lib/systems.ts'
import type { BenchRecord, LoadResult } from './lib/types.ts'

const FLAGS: FlagSpec = {
  connects: { type: 'number', default: 200, doc: 'sequential connections per listener in the handshake phase' },
  'duration-s': { type: 'number', default: 8, doc: 'measured window of each throughput run' },
  'warmup-s': { type: 'number', default: 2, doc: 'load before the window, not recorded' },
  connections: { type: 'number', default: 100, doc: 'throughput runs: connections (devices)' },
  inflight: { type: 'number', default: 32, doc: 'throughput runs: QoS 1 publishes in flight per connection' },
  pin: { type: 'bool', default: true, doc: 'taskset: gateway on --broker-core, load on --loadgen-core' },
  'broker-core': { type: 'number', default: 1, doc: 'CPU core of the gateway' },
  'loadgen-core': { type: 'number', default: 0, doc: 'CPU core of the load generator and the handshake client' },
  write: { type: 'bool', default: true, doc: 'append records to bench/results/tls.jsonl' },
  echo: { type: 'bool', default: false, doc: 'echo child output' }
}

type Gw = { proc: Proc, plain: number, tls: number, command: string }

async function startGateway (cleanup: Cleanup, core: number | null, echo: boolean, tlsArgs: string[]): Promise<Gw> {
  const dir = cleanup.tempDir('bench-tls-gw-')
  const args = ['--data-dir', join(dir, 'data'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--durability', 'process',
    '--max-buffer-items', '100000000', '--max-buffer-bytes', String(64 * 1024 ** 3), '--tls-port', '0', ...tlsArgs]
  const argv = pinned(core, [process.execPath, '--import', 'tsx', GATEWAY_MAIN.slice(ROOT.length + 1), ...args])
  const proc = cleanup.spawn('gateway', argv, { cwd: ROOT, echo })
  const ready = await proc.waitFor((l) => l.msg === 'ready', 30_000, 'ready line')
  return { proc, plain: ready.mqttPort as number, tls: ready.tlsPort as number, command: commandLine(argv).replace(process.execPath, 'node') }
}

type ConnectOpts = { tls: false } | { tls: true, ca: Buffer, cert?: Buffer, key?: Buffer }

/** One connection: (TLS handshake +) CONNECT -> CONNACK, then DISCONNECT; resolves with ms to CONNACK. */
function connectOnce (port: number, clientId: string, o: ConnectOpts): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now()
    const sock: net.Socket = o.tls
      ? tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: o.ca, ...(o.cert && o.key ? { cert: o.cert, key: o.key } : {}) })
      : net.connect({ host: '127.0.0.1', port })
    sock.setNoDelay(true)
    const splitter = new FrameSplitter()
    let done = false
    const fail = (err: Error): void => { if (!done) { done = true; sock.destroy(); reject(err) } }
    sock.once(o.tls ? 'secureConnect' : 'connect', () => sock.write(connectPacket(clientId, 60)))
    sock.on('data', (chunk: Buffer) => {
      splitter.push(chunk, (type, _f, body) => {
        if (type !== PacketType.Connack || done) return
        done = true
        const ms = performance.now() - t0
        if (body[1] !== 0) { sock.destroy(); reject(new Error(`CONNACK ${body[1]}`)); return }
        sock.end(DISCONNECT)
        sock.once('close', () => resolve(ms))
      })
    })
    sock.on('error', fail)
    sock.on('close', () => fail(new Error('closed before CONNACK')))
    setTimeout(() => fail(new Error('no CONNACK within 10 s')), 10_000).unref()
  })
}

type Handshake = { p50Ms: number, p99Ms: number, cpuMsPerConnect: number, connectsPerSec: number }

async function handshakes (gw: Gw, port: number, n: number, clientId: string, o: ConnectOpts): Promise<Handshake> {
  for (let i = 0; i < 10; i++) await connectOnce(port, clientId, o) // warm-up (JIT, session setup)
  const h = new Histogram()
  const cpu0 = cpuSeconds(gw.proc.pid)!
  const t0 = performance.now()
  for (let i = 0; i < n; i++) h.recordMs(await connectOnce(port, clientId, o))
  const secs = (performance.now() - t0) / 1000
  const cpu = cpuSeconds(gw.proc.pid)! - cpu0
  const s = h.summary()
  return { p50Ms: s.p50Ms, p99Ms: s.p99Ms, cpuMsPerConnect: Math.round(cpu * 1e6 / n) / 1000, connectsPerSec: Math.round(n / secs) }
}

async function throughput (cleanup: Cleanup, gw: Gw, port: number, useTls: boolean, ca: string, f: ReturnType<typeof parseFlags>, loadCore: number | null, tag: string): Promise<{ load: LoadResult, cpuUsPerMsg: number | null, peakRssMb: number, loadgenCommand: string }> {
  const args = ['--port', String(port), '--connections', String(num(f, 'connections')), '--inflight', String(num(f, 'inflight')),
    '--duration-s', String(num(f, 'duration-s')), '--warmup-s', String(num(f, 'warmup-s')), '--id-prefix', `tls-bench-${tag}-`,
    ...(useTls ? ['--tls', '--ca', ca] : [])]
  const argv = pinned(loadCore, [process.execPath, '--import', 'tsx', 'bench/loadgen.ts', ...args])
  const lg = cleanup.spawn('loadgen', argv, { cwd: ROOT, echo: bool(f, 'echo') })
  const sampler = new RssSampler(gw.proc.pid, 200)
  let cpuA: number | null = null
  let tA = 0
  let cpuPct: number | null = null
  lg.onLine((_l, o) => {
    if (o?.type !== 'phase') return
    if (o.phase === 'measure') { cpuA = cpuSeconds(gw.proc.pid); tA = performance.now() }
    if (o.phase === 'drain' && cpuA !== null) cpuPct = (cpuSeconds(gw.proc.pid)! - cpuA) / ((performance.now() - tA) / 1000) * 100
  })
  const load = await lg.waitFor((o) => o.type === 'result', (90 + num(f, 'duration-s') + num(f, 'warmup-s')) * 1000, 'result line') as unknown as LoadResult
  await lg.stop('SIGTERM', 3000)
  const peakRssMb = Math.round(sampler.stop() / 1024 * 10) / 10
  const cpuUsPerMsg = cpuPct !== null && load.msgsPerSec > 0 ? Math.round((cpuPct as number) * 1e4 / load.msgsPerSec * 10) / 10 : null
  return { load, cpuUsPerMsg, peakRssMb, loadgenCommand: commandLine(argv).replace(process.execPath, 'node') }
}

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(`usage: node --import tsx bench/tls.ts [flags]\n${helpText(FLAGS)}\n`); return }
  const pin = bool(f, 'pin') && canPin()
  const brokerCore = pin ? num(f, 'broker-core') : null
  const loadCore = pin ? num(f, 'loadgen-core') : null
  const pinNote = pin ? `gateway on core ${brokerCore}, load on core ${loadCore} (taskset)` : 'not pinned'
  const cleanup = new Cleanup()
  const runId = new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + '-' + process.pid
  const command = commandLine(['node', '--import', 'tsx', 'bench/tls.ts', ...process.argv.slice(2)])
  const base = { scenario: 'tls', kind: 'result' as const, runId, gitSha: gitSha(), node: process.version, host: hostInfo(pinNote), command, systemVersion: `${tls.DEFAULT_MAX_VERSION}, P-256 certificates` }
  const records: BenchRecord[] = []
  const put = (r: Omit<BenchRecord, keyof typeof base | 'ts'>): void => {
    const rec = { ...base, ts: new Date().toISOString(), ...r } as unknown as BenchRecord
    records.push(rec)
    if (bool(f, 'write')) appendRecord('tls.jsonl', rec)
  }

  const pki = cleanup.tempDir('bench-tls-pki-')
  const ca = await makeCa(pki, 'ca')
  const server = await makeCert(ca, 'gateway')
  const device = await makeCert(ca, 'hs-device')
  const caBuf = readFileSync(ca.certPath)
  const n = num(f, 'connects')
  process.stderr.write(`tls bench ${runId}: ${n} sequential connects per listener; throughput ${num(f, 'connections')}x${num(f, 'inflight')} for ${num(f, 'duration-s')} s; ${pinNote}\n`)

  // 1. handshakes: plain and server-TLS on gateway A, mTLS on gateway B
  const a = await startGateway(cleanup, brokerCore, bool(f, 'echo'), ['--tls-cert', server.certPath, '--tls-key', server.keyPath])
  const b = await startGateway(cleanup, brokerCore, bool(f, 'echo'), ['--tls-cert', server.certPath, '--tls-key', server.keyPath, '--tls-ca', ca.certPath, '--tls-require-client-cert'])
  const hs: [string, Gw, number, ConnectOpts][] = [
    ['gateway-plain', a, a.plain, { tls: false }],
    ['gateway-tls', a, a.tls, { tls: true, ca: caBuf }],
    ['gateway-mtls', b, b.tls, { tls: true, ca: caBuf, cert: readFileSync(device.certPath), key: readFileSync(device.keyPath) }]
  ]
  for (const [system, gw, port, o] of hs) {
    const r = await handshakes(gw, port, n, 'hs-device', o)
    process.stderr.write(`  handshake ${system.padEnd(14)} connect p50 ${fmtMs(r.p50Ms)} p99 ${fmtMs(r.p99Ms)} ms  gateway CPU ${r.cpuMsPerConnect.toFixed(2)} ms/connect  ${fmtInt(r.connectsPerSec)} connects/s\n`)
    put({ system, params: { row: `handshake x${n} sequential` }, connectP50Ms: r.p50Ms, connectP99Ms: r.p99Ms, cpuMsPerConnect: r.cpuMsPerConnect, connectsPerSec: r.connectsPerSec, systemCommand: gw.command })
  }
  await b.proc.stop('SIGTERM', 10_000)

  // 2. PUBACK throughput on gateway A: plain, TLS, plain
  const row = `puback ${num(f, 'connections')}x${num(f, 'inflight')}`
  const runs: { system: string, r: Awaited<ReturnType<typeof throughput>> }[] = []
  for (const [k, useTls] of [[0, false], [1, true], [2, false]] as const) {
    const r = await throughput(cleanup, a, useTls ? a.tls : a.plain, useTls, ca.certPath, f, loadCore, String(k))
    const system = useTls ? 'gateway-tls' : 'gateway-plain'
    runs.push({ system, r })
    process.stderr.write(`  ${row} ${system.padEnd(14)} ${fmtInt(r.load.msgsPerSec).padStart(8)} msgs/s  p50 ${fmtMs(r.load.latency.p50Ms)} p99 ${fmtMs(r.load.latency.p99Ms)} ms  CPU ${String(r.cpuUsPerMsg)} us/msg  rss ${r.peakRssMb} MB  connect-all ${r.load.connectMs} ms\n`)
  }
  await a.proc.stop('SIGTERM', 10_000)
  const plains = runs.filter((x) => x.system === 'gateway-plain').sort((x, y) => x.r.load.msgsPerSec - y.r.load.msgsPerSec)
  const plain = plains[0]! // the worse of the two plain runs: the ratio does not flatter TLS
  const tlsRun = runs.find((x) => x.system === 'gateway-tls')!
  for (const { system, r } of [plain, tlsRun]) {
    const e = r.load.errors
    put({
      system,
      ...(system === 'gateway-tls' ? { baseline: 'gateway-plain' } : {}),
      params: { row, connections: num(f, 'connections'), inflight: num(f, 'inflight'), durationS: num(f, 'duration-s') },
      msgsPerSec: r.load.msgsPerSec, p50Ms: r.load.latency.p50Ms, p99Ms: r.load.latency.p99Ms, p999Ms: r.load.latency.p999Ms,
      peakRssMb: r.peakRssMb, cpuUsPerMsg: r.cpuUsPerMsg, connectAllMs: r.load.connectMs,
      errors: e.connect + e.socket + e.disconnects + e.unacked + e.outOfOrderAcks + e.unexpectedAcks,
      plainRuns: plains.map((x) => x.r.load.msgsPerSec),
      systemCommand: a.command, loadgenCommand: r.loadgenCommand
    })
  }
  process.stdout.write(`\nTLS/plain PUBACK throughput: ${fmtRatio(tlsRun.r.load.msgsPerSec / plain.r.load.msgsPerSec)} (plain runs ${plains.map((x) => fmtInt(x.r.load.msgsPerSec)).join(', ')} msgs/s)\n`)
  if (bool(f, 'write')) process.stdout.write('appended to bench/results/tls.jsonl; regenerate bench/RESULTS.md with: node --import tsx bench/update-results.ts\n')
  cleanup.killAll()
}

main().catch((err: Error) => { process.stderr.write(`tls bench: ${err.stack ?? err.message}\n`); process.exit(1) })
