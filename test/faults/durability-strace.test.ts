/**
 * `--durability power` against `process`, told apart by the syscalls (issue 13). kill -9
 * keeps the page cache, so no crash test can see a missing fsync; strace can. The real
 * gateway and ingest CLIs run under
 *   strace -f -e trace=fdatasync,fsync,write,writev,sendto,sendmsg -yy -xx
 * and the trace is read back in order:
 * - power: every PUBACK written to the device's socket comes after an fdatasync/fsync of
 *   the LevelDB log file (`*.log`) that received the reading's bytes, and after that write;
 * - process: the PUBACK still follows the log write, and no log is ever synced;
 * - ingest: every 200 answer comes after an fsync of the sink's log holding its items.
 * A PUBACK sent before the sync, or a `sync: false` store, fails these tests.
 */
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import { encodeBatch, type BatchItem } from '../../protocol/index.ts'
import { spawnCli, tempDir, type Child } from '../helpers/index.ts'
import { connectDevice, reading } from '../helpers/gateway.ts'
import { needTools } from '../helpers/tools.ts'

const N = 8

const straceArgs = (file: string): string[] => ['strace', '-f', '-qq', '--seccomp-bpf', '-e', 'trace=fdatasync,fsync,write,writev,sendto,sendmsg',
  '-e', 'signal=none', '-yy', '-xx', '-s', '8192', '-o', file]

/**
 * One completed syscall: its position in the trace (completion order), name, fd (path or
 * socket) and the bytes it wrote, hex-escaped (writev's iovecs joined).
 */
type Call = { at: number, name: string, fd: string, data: string }

function parseTrace (trace: string): Call[] {
  const pending = new Map<string, { name: string, text: string }>()
  const out: Call[] = []
  const add = (at: number, name: string, text: string): void => {
    // -xx prints the fd's path or socket hex-escaped too
    const fd = (/^\d+<(.*?)>(?:, |\))/.exec(text)?.[1] ?? '').replace(/\\x([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
    const data = [...text.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((x) => x[1]).join('').toLowerCase()
    out.push({ at, name, fd, data })
  }
  trace.split('\n').forEach((line, at) => {
    const m = /^(\d+)\s+(.*)$/.exec(line)
    if (!m) return
    const [, pid, rest] = m as unknown as [string, string, string]
    let r = /^<\.\.\. (\w+) resumed>(.*)$/.exec(rest)
    if (r) { const p = pending.get(pid); pending.delete(pid); add(at, r[1]!, (p?.text ?? '') + r[2]!); return }
    r = /^(\w+)\((.*) <unfinished \.\.\.>$/.exec(rest)
    if (r) { pending.set(pid, { name: r[1]!, text: r[2]! }); return }
    r = /^(\w+)\((.*)$/.exec(rest)
    if (r) add(at, r[1]!, r[2]!)
  })
  return out
}

const hex = (b: Uint8Array | string): string => [...Buffer.from(b)].map((x) => '\\x' + x.toString(16).padStart(2, '0')).join('')
const WRITES = new Set(['write', 'writev', 'sendto', 'sendmsg'])
const isLogSync = (c: Call, dir: string): boolean => (c.name === 'fdatasync' || c.name === 'fsync') && c.fd.startsWith(dir) && c.fd.endsWith('.log')

/** Publishes at QoS 1; resolves with the packet id once PUBACKed. */
function publishId (c: MqttClient, topic: string, payload: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    c.publish(topic, payload, { qos: 1 }, (err, packet) => err ? reject(err) : resolve((packet as { messageId: number }).messageId))
  })
}

async function stopAndRead (child: Child, file: string): Promise<Call[]> {
  await child.kill('SIGTERM')
  return parseTrace(await readFile(file, 'utf8'))
}

type Ordered = { logWrite: number, sync: number | null, answer: number }

/**
 * For each marker: the log write holding it, the answer on the TCP socket of `port` that
 * matches `answerBytes`, and the last log sync between them (null: none).
 */
function order (calls: Call[], dir: string, port: number, marks: { marker: string, answer: string }[]): Ordered[] {
  return marks.map(({ marker, answer }) => {
    const w = calls.find((c) => WRITES.has(c.name) && c.fd.startsWith(dir) && c.fd.endsWith('.log') && c.data.includes(hex(marker)))
    assert.ok(w, `no write of ${marker} to a LevelDB log under ${dir} in the trace`)
    const a = calls.find((c) => c.at > w.at && WRITES.has(c.name) && c.fd.includes(`:${port}->`) && c.data.includes(answer))
    const before = calls.find((c) => WRITES.has(c.name) && c.fd.includes(`:${port}->`) && c.data.includes(answer) && c.at < w.at)
    assert.equal(before, undefined, `the answer for ${marker} was written before its log write`)
    assert.ok(a, `no answer for ${marker} on the socket of port ${port};`)
    const syncs = calls.filter((c) => isLogSync(c, dir) && c.at > w.at && c.at < a.at)
    return { logWrite: w.at, sync: syncs.at(-1)?.at ?? null, answer: a.at }
  })
}

async function tracedGateway (t: TestContext, durability: 'power' | 'process'): Promise<{ calls: Call[], dataDir: string, marks: { marker: string, answer: string }[], port: number }> {
  const dir = await tempDir(t, 'durability-strace-')
  const dataDir = join(dir, 'gw')
  const file = join(dir, 'trace')
  const gw = await spawnCli(t, 'gateway/main.ts', ['--data-dir', dataDir, '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0',
    '--durability', durability, '--partitions', '1'], { wrap: straceArgs(file), readyTimeoutMs: 60_000, env: { LOG_LEVEL: 'warn' } })
  const port = gw.ready.mqttPort as number
  const c = await connectDevice(t, port, 'strace-dev', { connectTimeout: 20_000 })
  const marks: { marker: string, answer: string }[] = []
  const salt = randomBytes(4).toString('hex')
  for (let i = 1; i <= N; i++) {
    const marker = `mark-${salt}-${i}`
    const id = await publishId(c, 'devices/strace-dev/readings', reading(i, { values: { tag: marker } }))
    marks.push({ marker, answer: hex(Buffer.from([0x40, 0x02, id >> 8, id & 0xff])) })
  }
  await c.endAsync()
  return { calls: await stopAndRead(gw, file), dataDir, marks, port }
}

test('durability=power: every PUBACK follows an fdatasync of the LevelDB log holding its reading (strace)', { timeout: 120_000 }, async (t) => {
  needTools('strace')
  const { calls, dataDir, marks, port } = await tracedGateway(t, 'power')
  const o = order(calls, dataDir, port, marks)
  t.diagnostic(`trace positions (log write, sync, PUBACK): ${o.map((x) => `${x.logWrite}/${x.sync}/${x.answer}`).join(' ')}`)
  for (const [i, x] of o.entries()) {
    assert.notEqual(x.sync, null, `reading ${i + 1}: PUBACK at ${x.answer} without an fsync of the log after its write at ${x.logWrite}`)
  }
})

test('durability=process: PUBACKs follow the log write, and no LevelDB log is ever synced (strace)', { timeout: 120_000 }, async (t) => {
  needTools('strace')
  const { calls, dataDir, marks, port } = await tracedGateway(t, 'process')
  const o = order(calls, dataDir, port, marks)
  for (const [i, x] of o.entries()) assert.equal(x.sync, null, `reading ${i + 1}: a log fsync at ${x.sync} before its PUBACK`)
  const first = Math.min(...o.map((x) => x.logWrite))
  const syncs = calls.filter((c) => isLogSync(c, dataDir) && c.at > first)
  assert.deepEqual(syncs.map((c) => c.fd), [], 'no log fsync after the first reading')
})

test('ingest: every 200 answer follows an fdatasync of the sink log holding its items (strace)', { timeout: 120_000 }, async (t) => {
  needTools('strace')
  const dir = await tempDir(t, 'durability-strace-ingest-')
  const dataDir = join(dir, 'ingest')
  const file = join(dir, 'trace')
  const token = 'strace-secret-pa'
  const ingest = await spawnCli(t, 'ingest/main.ts', ['--port', '0', '--data-dir', dataDir, '--token', `gw1:${token}`],
    { wrap: straceArgs(file), readyTimeoutMs: 60_000, env: { LOG_LEVEL: 'warn' } })
  const port = ingest.ready.port as number
  const salt = randomBytes(4).toString('hex')
  const marks: { marker: string, answer: string }[] = []
  for (let i = 1; i <= N; i++) {
    const marker = `mark-${salt}-${i}`
    const batch = `batch-${salt}-${i}`
    const item: BatchItem = [0, i, 'strace-dev', i, 1, null, Date.now(), { tag: marker }]
    const res = await fetch(`http://127.0.0.1:${port}/v1/batches`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/cbor' },
      body: encodeBatch({ gateway: 'gw1', epoch: 'ep1', batch, floors: [[0, 1]], items: [item] })
    })
    assert.equal(res.status, 200)
    await res.arrayBuffer()
    marks.push({ marker, answer: hex(batch) })
  }
  const o = order(await stopAndRead(ingest, file), dataDir, port, marks)
  t.diagnostic(`trace positions (log write, sync, answer): ${o.map((x) => `${x.logWrite}/${x.sync}/${x.answer}`).join(' ')}`)
  for (const [i, x] of o.entries()) assert.notEqual(x.sync, null, `batch ${i + 1}: answered at ${x.answer} without an fsync of the log after its write at ${x.logWrite}`)
})
