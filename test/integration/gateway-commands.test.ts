/**
 * Commands to devices at the gateway (docs/commands.md "At the gateway"): a real Gateway, a
 * fake CommandLink (hands commands in, records reports, answers them applied) and MQTT.js
 * devices.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import type { MqttClient } from 'mqtt'
import { Gateway, parseGatewayConfig, type GatewayConfig } from '../../gateway/index.ts'
import type { CommandLink, LinkState, ReportsAnswer } from '../../gateway/commands/link.ts'
import { decodeDeviceCommand, encodeDeviceAnswer, type CommandsMessage, type Report, type ReportsRequest, type WireCommand } from '../../protocol/commands.ts'
import { decodeUntrusted } from '../../protocol/cbor.ts'
import { connectDevice, publish, reading } from '../helpers/gateway.ts'
import { spawnCli, tempDir, waitFor } from '../helpers/index.ts'
import * as P from '../../bench/lib/mqtt-hostile.ts'
import { connect as netConnect } from 'node:net'

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

class FakeLink implements CommandLink {
  onCommands: ((m: CommandsMessage) => Promise<void>) | null = null
  requests: ReportsRequest[] = []
  answer: (req: ReportsRequest) => ReportsAnswer = (req) => ({ kind: 'results', results: req.reports.map((_, i) => [i, 0] as [number, 0]) })
  closed = false
  start (on: (m: CommandsMessage) => Promise<void>): void { this.onCommands = on }
  async sendReports (req: ReportsRequest): Promise<ReportsAnswer> {
    this.requests.push(structuredClone(req))
    return this.answer(req)
  }

  status (): LinkState { return { state: 'ok', url: 'fake:', lastError: null, lastOkAt: null } }
  async close (): Promise<void> { this.closed = true }
  async offer (commands: WireCommand[], recalls: CommandsMessage['recalls'] = []): Promise<void> {
    await waitFor(() => this.onCommands, { what: 'link started' })
    await this.onCommands!({ v: 1, commands, recalls })
  }

  /** Every report sent (in order, acknowledged or not). */
  get reports (): Report[] { return this.requests.flatMap((r) => r.reports) }
  statesOf (id: string): string[] { return this.reports.filter((r) => r[0] === id).map((r) => r[2]) }
}

type T = { after: (fn: () => unknown) => void }
let nextN = 1
function cmd (device: string, over: Partial<WireCommand> = {}): WireCommand {
  const n = nextN++
  return { id: `c${n}-${Math.random().toString(36).slice(2, 8)}`, device, n, name: 'set-interval', args: { seconds: n }, createdAt: Date.now(), expiresAt: Date.now() + 60_000, ...over }
}

async function start (t: T, link: CommandLink, overrides: Partial<GatewayConfig> = {}): Promise<Gateway> {
  const base = parseGatewayConfig({ argv: [], env: {} })
  const dataDir = overrides.dataDir ?? await tempDir(t)
  const gw = await Gateway.create({ ...base, host: '127.0.0.1', mqttPort: 0, adminPort: 0, durability: 'process', ...overrides, dataDir }, log, { commandLink: link })
  t.after(() => gw.close())
  return gw
}

/** A device that subscribes to its commands and records what it receives. */
async function device (t: T, gw: Gateway, id: string, opts: { clean?: boolean } = {}): Promise<MqttClient & { got: Array<{ id: string, raw: Buffer }> }> {
  const c = await connectDevice(t, gw.mqttPort, id, { clean: opts.clean ?? false }) as MqttClient & { got: Array<{ id: string, raw: Buffer }> }
  c.got = []
  c.on('message', (topic, payload) => { if (topic === `devices/${id}/commands`) c.got.push({ id: decodeDeviceCommand(payload).id, raw: Buffer.from(payload) }) })
  const granted = await c.subscribeAsync(`devices/${id}/commands`, { qos: 1 })
  assert.equal(granted[0]!.qos, 1)
  return c
}

const answer = (c: MqttClient, dev: string, id: string, ok = true, format: 'json' | 'cbor' = 'json'): Promise<void> =>
  publish(c, `devices/${dev}/commands/answers`, encodeDeviceAnswer(ok ? { id, ok: true, result: { done: id } } : { id, ok: false, error: 'no' }, format))

const counter = async (gw: Gateway, name: string, labels = ''): Promise<number> => {
  const text = await gw.metrics.registry.metrics()
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)))
  return line ? Number(line.split(' ').pop()) : 0
}

test('delivered and completed in order, one at a time in n order, JSON device', async (t) => {
  const link = new FakeLink()
  const gw = await start(t, link)
  const d = await device(t, gw, 'dev-a')
  const a = cmd('dev-a'); const b = cmd('dev-a')
  await link.offer([b, a]) // out of order: delivered by n
  await waitFor(() => d.got.length === 1, { what: 'first command' })
  assert.equal(d.got[0]!.id, a.id)
  assert.equal(d.got[0]!.raw[0], 0x7b) // JSON
  await waitFor(() => link.statesOf(a.id).includes('delivered'), { what: 'delivered reported' })
  assert.equal(d.got.length, 1, 'the second waits for the first\'s answer')
  await answer(d, 'dev-a', a.id)
  await waitFor(() => d.got.length === 2, { what: 'second command' })
  assert.equal(d.got[1]!.id, b.id)
  await answer(d, 'dev-a', b.id, false)
  await waitFor(() => link.statesOf(b.id).includes('rejected'), { what: 'rejected reported' })
  assert.deepEqual(link.statesOf(a.id), ['at-gateway', 'delivered', 'completed'])
  assert.deepEqual(link.statesOf(b.id), ['at-gateway', 'delivered', 'rejected'])
  const done = link.reports.find((r) => r[0] === a.id && r[2] === 'completed')!
  assert.deepEqual(done[4], { done: a.id })
  const presence = link.requests.flatMap((r) => r.presence)
  assert.ok(presence.some((p) => p[0] === 'dev-a' && p[1] === 1), 'presence reported')
  assert.equal(link.requests[0]!.snapshot, true, 'the first request is a snapshot')
  await waitFor(() => gw.commands!.reportsPending === 0, { what: 'outbox empty' })
})

test('a device publishing CBOR readings gets CBOR commands', async (t) => {
  const link = new FakeLink()
  const gw = await start(t, link)
  const d = await device(t, gw, 'dev-c')
  await publish(d, 'devices/dev-c/readings', reading(1))
  const c = cmd('dev-c')
  await link.offer([c])
  await waitFor(() => d.got.length === 1, { what: 'command' })
  assert.notEqual(d.got[0]!.raw[0], 0x7b)
  assert.equal((decodeUntrusted(d.got[0]!.raw, { maxDepth: 8 }) as { id: string }).id, c.id)
  await answer(d, 'dev-c', c.id, true, 'cbor')
  await waitFor(() => link.statesOf(c.id).includes('completed'), { what: 'completed' })
})

test('offline device gets its command on connect; unanswered one redelivered after reconnect (same id)', async (t) => {
  const link = new FakeLink()
  const gw = await start(t, link)
  const c = cmd('dev-o')
  await link.offer([c])
  await waitFor(() => link.statesOf(c.id).includes('at-gateway'), { what: 'at-gateway' })
  const d1 = await device(t, gw, 'dev-o')
  await waitFor(() => d1.got.length === 1, { what: 'delivered after connect' })
  await waitFor(() => link.statesOf(c.id).includes('delivered'), { what: 'delivered' })
  await d1.endAsync()
  const d2 = await device(t, gw, 'dev-o')
  await waitFor(() => d2.got.length >= 1, { what: 'redelivered' })
  assert.equal(d2.got[0]!.id, c.id)
  await answer(d2, 'dev-o', c.id)
  await waitFor(() => link.statesOf(c.id).includes('completed'), { what: 'completed' })
  assert.deepEqual(link.statesOf(c.id), ['at-gateway', 'delivered', 'completed'])
})

test('expiry before delivery: expired, never delivered', async (t) => {
  const link = new FakeLink()
  const gw = await start(t, link)
  const c = cmd('dev-x', { expiresAt: Date.now() + 300 })
  await link.offer([c])
  await waitFor(() => link.statesOf(c.id).includes('expired'), { what: 'expired' })
  const d = await device(t, gw, 'dev-x')
  const c2 = cmd('dev-x')
  await link.offer([c2])
  await waitFor(() => d.got.length === 1, { what: 'the next command' })
  assert.deepEqual(d.got.map((g) => g.id), [c2.id], 'the expired one never went out (the next one did)')
})

test('answers for another device\'s command or an unknown id are refused and counted; ACL on command topics', async (t) => {
  const link = new FakeLink()
  const gw = await start(t, link)
  const a = await device(t, gw, 'dev-1')
  const b = await device(t, gw, 'dev-2')
  const c = cmd('dev-1')
  await link.offer([c])
  await waitFor(() => a.got.length === 1, { what: 'delivered' })
  await answer(b, 'dev-2', c.id) // dev-2 answers dev-1's command on its own topic
  await waitFor(async () => await counter(gw, 'gateway_command_answers_refused_total', '{reason="unknown"}') === 1, { what: 'refusal counted' })
  assert.ok(!link.statesOf(c.id).includes('completed'))
  // subscriptions aimed at another device's commands: SUBACK 0x80
  for (const f of ['devices/dev-1/commands', 'devices/+/commands', '+/+/commands', 'devices/dev-1/commands/#']) {
    await assert.rejects(b.subscribeAsync(f, { qos: 1 }), /Subscribe error/, f)
  }
  // a local app's wildcard for readings still works, and a catch-all never sees commands
  const app = await connectDevice(t, gw.mqttPort, 'local-app')
  const seen: string[] = []
  app.on('message', (topic) => seen.push(topic))
  assert.equal((await app.subscribeAsync('devices/+/readings', { qos: 1 }))[0]!.qos, 1)
  assert.equal((await app.subscribeAsync('#', { qos: 1 }))[0]!.qos, 1)
  const c2 = cmd('dev-2')
  await link.offer([c2])
  await waitFor(() => b.got.length === 1, { what: 'dev-2 gets its command' })
  await publish(b, 'devices/dev-2/readings', reading(1))
  await waitFor(() => seen.includes('devices/dev-2/readings'), { what: 'app sees readings' })
  assert.ok(!seen.some((s) => s.endsWith('/commands')), 'no command reached the app')
  // publishing another device's answers, or to a commands topic: refused (connection closed)
  const closed = new Promise<void>((resolve) => b.once('close', () => resolve()))
  await assert.rejects(answer(b, 'dev-1', c.id))
  await closed
  await answer(a, 'dev-1', c.id)
  await waitFor(() => link.statesOf(c.id).includes('completed'), { what: 'completed by its own device' })
  const intruder = await connectDevice(t, gw.mqttPort, 'intruder')
  const closed2 = new Promise<void>((resolve) => intruder.once('close', () => resolve()))
  await assert.rejects(publish(intruder, 'devices/dev-1/commands', '{"id":"x","name":"reboot","args":null,"expiresAt":1}'))
  await closed2
})

test('restart keeps held commands and unacknowledged reports; a repeated offer of a finished id is not delivered again; recall', async (t) => {
  const dataDir = await tempDir(t)
  const link1 = new FakeLink()
  link1.answer = () => ({ kind: 'none', error: 'down' })
  const gw1 = await start(t, link1, { dataDir })
  const held = cmd('dev-r')
  const recalled = cmd('dev-q')
  await link1.offer([held, recalled])
  await waitFor(() => link1.requests.length >= 1, { what: 'a reports request' })
  await gw1.close()

  const link2 = new FakeLink()
  const gw2 = await start(t, link2, { dataDir })
  await waitFor(() => link2.statesOf(held.id).includes('at-gateway'), { what: 'at-gateway reported after restart' })
  await link2.offer([], [{ id: recalled.id, device: 'dev-q', cancel: false }])
  await waitFor(() => link2.statesOf(recalled.id).includes('recalled'), { what: 'recalled' })
  await waitFor(() => gw2.commands!.record(recalled.id) === undefined, { what: 'recalled record deleted after its report' })
  const d = await device(t, gw2, 'dev-r')
  await waitFor(() => d.got.length === 1, { what: 'held command delivered after restart' })
  await answer(d, 'dev-r', held.id)
  await waitFor(() => link2.statesOf(held.id).includes('completed'), { what: 'completed' })
  await waitFor(() => gw2.commands!.reportsPending === 0, { what: 'all reported' })
  await link2.offer([held]) // a late repeat
  const next = cmd('dev-r')
  await link2.offer([next])
  await waitFor(() => d.got.length === 2, { what: 'the next command' })
  assert.deepEqual(d.got.map((g) => g.id), [held.id, next.id], 'the finished id was not delivered again')
  const q = await device(t, gw2, 'dev-q')
  const other = cmd('dev-q')
  await link2.offer([other])
  await waitFor(() => q.got.length === 1, { what: 'dev-q command' })
  assert.deepEqual(q.got.map((g) => g.id), [other.id], 'the recalled command was never delivered')
  const status = await gw2.status() as { commands: { held: number, reportsPending: number } }
  assert.equal(typeof status.commands.held, 'number')
})

test('over --commands-max-per-device: not stored, nothing reported, counted', async (t) => {
  const link = new FakeLink()
  const gw = await start(t, link, { commandsMaxPerDevice: 1 })
  const a = cmd('dev-m'); const b = cmd('dev-m')
  await link.offer([a, b])
  await waitFor(() => link.statesOf(a.id).includes('at-gateway'), { what: 'first taken' })
  assert.equal(gw.commands!.record(b.id), undefined)
  assert.equal(await counter(gw, 'gateway_commands_not_taken_total', '{reason="device"}'), 1)
  assert.deepEqual(link.statesOf(b.id), [])
})

test('gateway commands list shows a stopped gateway\'s held commands', async (t) => {
  const dataDir = await tempDir(t)
  const link = new FakeLink()
  const gw = await start(t, link, { dataDir })
  const c = cmd('dev-l')
  await link.offer([c])
  await gw.close()
  const { commandsMain } = await import('../../gateway/cli/commands.ts')
  const chunks: string[] = []
  const write = process.stdout.write
  process.stdout.write = ((s: string) => { chunks.push(s); return true }) as typeof process.stdout.write
  let code
  try { code = await commandsMain(['list', '--data-dir', dataDir, '--device', 'dev-l', '--json'], {}) } finally { process.stdout.write = write }
  assert.equal(code, 0)
  const doc = JSON.parse(chunks.join('')) as { commands: Array<{ id: string, state: string }> }
  assert.deepEqual(doc.commands.map((x) => [x.id, x.state]), [[c.id, 'at-gateway']])
  // gateway check knows the k! records
  const { openDataDir } = await import('../../gateway/store/dlq-reader.ts')
  const { checkReport } = await import('../../gateway/store/check.ts')
  const { db } = await openDataDir(dataDir)
  try {
    const r = await checkReport(db, { dedupIdleForgetMs: 86_400_000 })
    assert.deepEqual(r.problems, [])
  } finally { await db.close() }
})

test('kill -9 after the commands are stored: held and reported after the restart, then delivered', async (t) => {
  const dataDir = await tempDir(t)
  const c1 = cmd('dev-k'); const c2 = cmd('dev-k')
  const child = await spawnCli(t, 'test/fixtures/commands-child.ts', [], { env: { DATA_DIR: dataDir, COMMANDS: JSON.stringify([c1, c2]) } })
  assert.equal(child.ready.stored, 2)
  await child.kill('SIGKILL')
  const link = new FakeLink()
  const gw = await start(t, link, { dataDir })
  await waitFor(() => link.statesOf(c1.id).includes('at-gateway') && link.statesOf(c2.id).includes('at-gateway'), { what: 'at-gateway reported after kill -9' })
  const d = await device(t, gw, 'dev-k')
  await waitFor(() => d.got.length === 1, { what: 'delivered' })
  assert.equal(d.got[0]!.id, c1.id)
  await answer(d, 'dev-k', c1.id)
  await waitFor(() => d.got.length === 2, { what: 'second delivered' })
  assert.equal(d.got[1]!.id, c2.id)
})

test('a delivered command unanswered at expiresAt expires; its late answer is dropped and counted', async (t) => {
  const link = new FakeLink()
  const gw = await start(t, link)
  const d = await device(t, gw, 'dev-e')
  const c = cmd('dev-e', { expiresAt: Date.now() + 600 })
  await link.offer([c])
  await waitFor(() => link.statesOf(c.id).includes('delivered'), { what: 'delivered' })
  await waitFor(() => link.statesOf(c.id).includes('expired'), { what: 'expired' })
  await answer(d, 'dev-e', c.id)
  await waitFor(async () => await counter(gw, 'gateway_command_answers_refused_total', '{reason="expired"}') === 1, { what: 'late answer counted' })
  assert.deepEqual(link.statesOf(c.id), ['at-gateway', 'delivered', 'expired'])
})

test('reports: retry keeps a report, rejected drops it (counted), no answer backs off and sends again', async (t) => {
  const link = new FakeLink()
  let calls = 0
  link.answer = (req) => {
    calls++
    if (calls === 2) return { kind: 'none', error: 'down' }
    return { kind: 'results', results: req.reports.map((r, i) => [i, r[2] === 'at-gateway' && r[0].startsWith('rej') ? 3 : calls === 1 ? 2 : 0] as [number, 0 | 2 | 3]) }
  }
  const gw = await start(t, link)
  const keep = cmd('dev-p')
  const rej = cmd('dev-p2', { id: `rej-${Math.random().toString(36).slice(2, 8)}` })
  await link.offer([keep, rej])
  await waitFor(() => gw.commands!.reportsPending === 0, { what: 'outbox empty', timeoutMs: 15_000 })
  assert.ok(calls >= 3, `sent again after retry and after no answer (${calls} requests)`)
  assert.equal(await counter(gw, 'gateway_command_reports_rejected_total'), 1)
  assert.ok(link.statesOf(keep.id).filter((s) => s === 'at-gateway').length >= 2, 'the retried report was sent again')
  const snapshots = link.requests.filter((r) => r.snapshot === true).length
  assert.ok(snapshots >= 2, 'a snapshot again after the failed request')
})

test('a persistent session\'s unacknowledged command is not resent by the broker after it expired', async (t) => {
  const link = new FakeLink()
  const gw = await start(t, link)
  // a raw client that never PUBACKs: the command stays in its persistent session's queue
  const sock = netConnect(gw.mqttPort, '127.0.0.1')
  t.after(() => sock.destroy())
  let bytes = Buffer.alloc(0)
  sock.on('data', (b: Buffer) => { bytes = Buffer.concat([bytes, b]) })
  sock.write(Buffer.concat([P.connect({ clientId: 'dev-s', clean: false }), P.subscribe(1, [{ topic: 'devices/dev-s/commands', qos: 1 }])]))
  await waitFor(() => bytes.length >= 9, { what: 'CONNACK and SUBACK' })
  const c = cmd('dev-s', { expiresAt: Date.now() + 700 })
  await link.offer([c])
  await waitFor(() => bytes.includes(c.id), { what: 'received, not acknowledged' })
  const gone = new Promise<void>((resolve) => sock.once('close', () => resolve()))
  sock.destroy()
  await gone
  await waitFor(() => link.statesOf(c.id).includes('expired'), { what: 'expired' })
  const d = await device(t, gw, 'dev-s')
  const c2 = cmd('dev-s')
  await link.offer([c2])
  await waitFor(() => d.got.some((g) => g.id === c2.id), { what: 'the next command' })
  assert.deepEqual(d.got.map((g) => g.id), [c2.id], 'the expired command was not resent')
  assert.deepEqual(link.statesOf(c.id), ['at-gateway', 'expired'])
})

test('recent (the admin page\'s /commands): newest change first, bounded, per device; finished ones still listed', async (t) => {
  const link = new FakeLink()
  const gw = await start(t, link)
  const a1 = cmd('rec-a')
  const b1 = cmd('rec-b')
  await link.offer([a1, b1])
  await new Promise((r) => setTimeout(r, 5))
  const a2 = cmd('rec-a')
  await link.offer([a2])
  const c = gw.commands!
  assert.deepEqual(c.recent(50).commands.map((x) => x.id), [a2.id, b1.id, a1.id])
  assert.equal(c.recent(50).total, 3)
  assert.deepEqual(c.recent(1).commands.map((x) => x.id), [a2.id])
  assert.deepEqual(c.recent(50, 'rec-b').commands.map((x) => [x.id, x.state, x.expiresAt]), [[b1.id, 'at-gateway', b1.expiresAt]])
  // a1 answered (completed), then a2 delivered: the two latest changes on top, a1 still listed while remembered
  const dev = await device(t, gw, 'rec-a')
  await waitFor(() => dev.got.some((g) => g.id === a1.id), { what: 'a1 delivered' })
  await answer(dev, 'rec-a', a1.id)
  const top2 = (): string => JSON.stringify(c.recent(2).commands.map((x) => [x.id, x.state, x.unreported]))
  await waitFor(() => top2() === JSON.stringify([[a2.id, 'delivered', 0], [a1.id, 'completed', 0]]), { what: `a2 delivered and a1 completed on top, reported (${top2()})` })
  const body = await (await fetch(`http://127.0.0.1:${gw.adminPort}/commands?limit=2`)).json() as { enabled: boolean, total: number, commands: { id: string, state: string }[] }
  assert.equal(body.enabled, true)
  assert.equal(body.total, 3)
  assert.deepEqual(body.commands.map((x) => [x.id, x.state]), [[a2.id, 'delivered'], [a1.id, 'completed']])
})
