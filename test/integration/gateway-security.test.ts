/**
 * The attacks on a broker exposed to a network (taking another device's id or session,
 * publishing for another device, guessing passwords) that the broker's secure defaults, topic rules and
 * login limits stop (docs/security.md). Each test failed on the code before them: the
 * comment above each says how.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as tcpConnect } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { MqttClient } from 'mqtt'
import { hashPassword } from '../../gateway/broker/auth.ts'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Gateway, parseGatewayConfig } from '../../gateway/index.ts'
import { spawnCli, ROOT, tempDir, waitFor } from '../helpers/index.ts'
import { publish, reading, startGateway } from '../helpers/gateway.ts'
import { connectFrom, metricValue } from '../helpers/mqtt-from.ts'
import { spawn } from 'node:child_process'

type T = Parameters<typeof tempDir>[0]

async function authFile (t: T): Promise<string> {
  const file = join(await tempDir(t), 'auth.json')
  await writeFile(file, JSON.stringify({
    devices: { 'sensor-9': await hashPassword('s9-pass', 1024), 'sensor-1': await hashPassword('s1-pass', 1024) },
    apps: { dashboard: await hashPassword('dash-pass', 1024) }
  }), { mode: 0o600 })
  return file
}

const refusedConnect = (port: number, host: string): Promise<string> => new Promise((resolve) => {
  const s = tcpConnect({ port, host })
  s.once('connect', () => { s.destroy(); resolve('connected') })
  s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
})

const subackCode = async (c: MqttClient, filter: string): Promise<number> => {
  try {
    const g = await c.subscribeAsync(filter, { qos: 1 })
    return g[0]!.qos
  } catch (err) {
    return (err as { packet?: { granted?: number[] } }).packet?.granted?.[0] ?? -1
  }
}

/** Resolves when the client's connection closes; rejects after `ms` (bounded, so old code fails instead of hanging). */
const closed = (c: MqttClient, ms = 10_000): Promise<void> => new Promise((resolve, reject) => {
  if (!c.connected) { resolve(); return }
  const timer = setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms)
  c.once('close', () => { clearTimeout(timer); resolve() })
})

// old code: the default --host was 0.0.0.0, so 127.0.0.2 (and every interface) reached it
test('default config: the MQTT listener binds loopback only and the ready line says so', async (t) => {
  const dir = await tempDir(t)
  const gw = await spawnCli(t, 'gateway/main.ts', ['--data-dir', dir, '--mqtt-port', '0', '--admin-port', '0'])
  assert.equal(gw.ready.mqttHost, '127.0.0.1')
  const port = gw.ready.mqttPort as number
  assert.equal(await refusedConnect(port, '127.0.0.1'), 'connected')
  assert.equal(await refusedConnect(port, '127.0.0.2'), 'ECONNREFUSED', 'a wildcard bind would accept 127.0.0.2')
})

// old code: the gateway started anonymous on 0.0.0.0 (and --allow-anonymous was an unknown flag)
test('--auth none on a non-loopback --host is a startup error unless --allow-anonymous', async (t) => {
  const dir = await tempDir(t)
  const r = await new Promise<{ code: number | null, err: string }>((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'gateway/main.ts', '--data-dir', dir, '--host', '0.0.0.0', '--mqtt-port', '0', '--admin-port', '0'], { cwd: ROOT })
    let err = ''
    p.stderr.on('data', (c) => { err += String(c) })
    // the old code started and logged `ready`: that ends the wait too (code null)
    p.stdout.on('data', (c) => { if (String(c).includes('"msg":"ready"')) resolve({ code: null, err }) })
    t.after(() => p.kill('SIGKILL'))
    p.on('exit', (code) => resolve({ code, err }))
  })
  assert.equal(r.code, 2)
  assert.equal(r.err.trim().split('\n').length, 1, r.err)
  assert.match(r.err, /--auth none on --host 0\.0\.0\.0/)
  assert.match(r.err, /gateway passwd FILE add-device ID/)
  assert.match(r.err, /--auth file --auth-file FILE/)
  assert.match(r.err, /--allow-anonymous/)
  const gw = await spawnCli(t, 'gateway/main.ts', ['--data-dir', dir, '--host', '0.0.0.0', '--allow-anonymous', '--mqtt-port', '0', '--admin-port', '0'])
  assert.equal(gw.ready.mqttHost, '0.0.0.0')
  assert.ok(gw.lines.some((l) => l.level === 40 && /anonymous clients allowed/.test(String(l.msg))), 'a warning names the exposure')
})

async function sysNewClientsAttack (t: T, gw: Gateway, device: { clientId: string, username?: string, password?: string }, attacker: { clientId: string, username?: string, password?: string }): Promise<void> {
  const dev = await connectFrom(t, gw.mqttPort, '127.0.0.1', device)
  let kicked = false
  dev.on('close', () => { kicked = true })
  const bad = await connectFrom(t, gw.mqttPort, '127.0.0.1', attacker)
  bad.publish('$SYS/x/new/clients', device.clientId, { qos: 0 })
  await closed(bad, 3000).catch(() => {}) // refused publishes close the publisher (asserted below)
  assert.equal(kicked, false, 'the device was disconnected by a $SYS publish')
  await publish(dev, `devices/${device.clientId}/readings`, reading(1))
  assert.equal(bad.connected, false, 'the $SYS publisher is disconnected')
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_acl_denied_total', { action: 'publish', rule: 'dollar_topic' }), 1)
}

// old code: Aedes closed the client named in the payload (the gateway's authorizePublish let $SYS through)
test('nobody publishes to $-topics: $SYS/x/new/clients cannot disconnect a device (auth none and auth file)', async (t) => {
  const open = await startGateway(t)
  await sysNewClientsAttack(t, open, { clientId: 'sensor-1' }, { clientId: 'mallory' })
  const closedGw = await startGateway(t, { auth: 'file', authFile: await authFile(t) })
  await sysNewClientsAttack(t, closedGw, { clientId: 'sensor-1', username: 'sensor-1', password: 's1-pass' }, { clientId: 'dash-1', username: 'dashboard', password: 'dash-pass' })
  // a will on a $-topic would be published by the broker when the client drops: refused at CONNECT
  await assert.rejects(connectFrom(t, open.mqttPort, '127.0.0.1', { clientId: 'w', will: { topic: '$SYS/x/new/clients', payload: Buffer.from('sensor-1'), qos: 0, retain: false } }), /Not authorized/i)
})

// old code: every filter was granted to anonymous clients
test('anonymous subscribers: wildcards, $SYS and other devices\' topics only from local networks (SUBACK 0x80)', async (t) => {
  const gw = await startGateway(t, { allowAnonymous: true, localNetworks: ['127.0.0.1/32'] })
  const far = await connectFrom(t, gw.mqttPort, '127.0.0.2', { clientId: 'sensor-5' })
  assert.equal(await subackCode(far, '#'), 128)
  assert.equal(await subackCode(far, 'devices/+/readings'), 128)
  assert.equal(await subackCode(far, 'devices/sensor-1/readings'), 128)
  assert.equal(await subackCode(far, '$SYS/#'), 128)
  assert.equal(await subackCode(far, 'devices/sensor-5/receipts'), 1)
  assert.equal(await subackCode(far, 'site/lights'), 1)
  assert.ok(far.connected, 'a refused subscription keeps the connection')
  const near = await connectFrom(t, gw.mqttPort, '127.0.0.1', { clientId: 'local-app' })
  assert.equal(await subackCode(near, '#'), 1)
  assert.equal(await subackCode(near, '$SYS/#'), 1)
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_acl_denied_total', { action: 'subscribe', rule: 'wildcard' }), 2)
  // --wildcard-subscribe all opens wildcards to everyone but never $SYS to remote clients
  const all = await startGateway(t, { allowAnonymous: true, localNetworks: ['127.0.0.1/32'], wildcardSubscribe: 'all' })
  const far2 = await connectFrom(t, all.mqttPort, '127.0.0.2', { clientId: 'x' })
  assert.equal(await subackCode(far2, '#'), 1)
  assert.equal(await subackCode(far2, '$SYS/#'), 128)
})

// old code: an app could connect with a device's client id, which kicked the device off
test('auth file: an impostor sensor-9 can neither kick the real device nor poison its dedup window', async (t) => {
  const gw = await startGateway(t, { auth: 'file', authFile: await authFile(t) })
  const real = await connectFrom(t, gw.mqttPort, '127.0.0.1', { clientId: 'sensor-9', username: 'sensor-9', password: 's9-pass' })
  let kicked = false
  real.on('close', () => { kicked = true })
  await publish(real, 'devices/sensor-9/readings', reading(1))
  await assert.rejects(connectFrom(t, gw.mqttPort, '127.0.0.2', { clientId: 'sensor-9', username: 'dashboard', password: 'dash-pass' }), /Not authorized/i)
  await assert.rejects(connectFrom(t, gw.mqttPort, '127.0.0.2', { clientId: 'sensor-9' }), /Bad username or password/i)
  await assert.rejects(connectFrom(t, gw.mqttPort, '127.0.0.2', { clientId: 'sensor-9', username: 'sensor-1', password: 's1-pass' }), /Bad username or password/i)
  // an app under its own id cannot publish the poisoned reading either
  const app = await connectFrom(t, gw.mqttPort, '127.0.0.2', { clientId: 'dash-1', username: 'dashboard', password: 'dash-pass' })
  await assert.rejects(publish(app, 'devices/sensor-9/readings', reading(9007199254740990)), /closed/)
  for (let seq = 2; seq <= 5; seq++) await publish(real, 'devices/sensor-9/readings', reading(seq))
  assert.equal(kicked, false)
  assert.equal(gw.store.items, 5, 'every reading of the real device is stored (none dead-lettered as too old)')
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_intake_readings_total', { outcome: 'too_old' }), 0)
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_connect_refused_total', { reason: 'device_id' }), 1)
})

// old code: any CONNECT with the same client id closed the connected device
test('auth none: a connected device id is taken over only from the same source address', async (t) => {
  const gw = await startGateway(t, { allowAnonymous: true })
  const real = await connectFrom(t, gw.mqttPort, '127.0.0.1', { clientId: 'sensor-9' })
  await assert.rejects(connectFrom(t, gw.mqttPort, '127.0.0.2', { clientId: 'sensor-9' }), /Identifier rejected/i)
  await publish(real, 'devices/sensor-9/readings', reading(1))
  assert.ok(real.connected)
  // the device itself reconnecting (e.g. over a half-open connection) still takes its session over
  const again = await connectFrom(t, gw.mqttPort, '127.0.0.1', { clientId: 'sensor-9' })
  await closed(real)
  await publish(again, 'devices/sensor-9/readings', reading(2))
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_connect_refused_total', { reason: 'takeover' }), 1)
})

// old code: unlimited guesses from one address
test('failed logins put the source address in back-off: CONNACK 5 even for the right password, other addresses unaffected', async (t) => {
  const gw = await startGateway(t, { auth: 'file', authFile: await authFile(t), loginFreeFailures: 2, loginBackoffBaseMs: 60_000 })
  const dev = { clientId: 'sensor-1', username: 'sensor-1' }
  for (let i = 0; i < 3; i++) await assert.rejects(connectFrom(t, gw.mqttPort, '127.0.0.3', { ...dev, password: `guess-${i}` }), /Bad username or password/i)
  await assert.rejects(connectFrom(t, gw.mqttPort, '127.0.0.3', { ...dev, password: 's1-pass' }), /Not authorized/i)
  await assert.rejects(connectFrom(t, gw.mqttPort, '127.0.0.3', { ...dev, password: 's1-pass' }), /Not authorized/i)
  const ok = await connectFrom(t, gw.mqttPort, '127.0.0.4', { ...dev, password: 's1-pass' })
  assert.ok(ok.connected)
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_login_failures_total'), 3)
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_connect_refused_total', { reason: 'banned' }), 2)
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_login_banned_addresses'), 1)
})

// old code: no limit on new connections per address
test('connection rate per source address: beyond the burst, sockets are closed before CONNECT; local networks exempt', async (t) => {
  const gw = await startGateway(t, { maxConnectRate: 0.5, connectBurst: 3, localNetworks: ['127.0.0.1/32'], allowAnonymous: true })
  for (let i = 0; i < 3; i++) (await connectFrom(t, gw.mqttPort, '127.0.0.5', { clientId: `r${i}` })).end(true)
  await assert.rejects(connectFrom(t, gw.mqttPort, '127.0.0.5', { clientId: 'r3' }), /closed|ECONNRESET|EPIPE/)
  await assert.rejects(connectFrom(t, gw.mqttPort, '127.0.0.5', { clientId: 'r4' }), /closed|ECONNRESET|EPIPE/)
  for (let i = 0; i < 5; i++) (await connectFrom(t, gw.mqttPort, '127.0.0.1', { clientId: `l${i}` })).end(true)
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_connect_refused_total', { reason: 'rate' }), 2)
  await waitFor(() => gw.broker.connected === 0, { what: 'clients gone' })
})

test('refusals are logged once per offender, counted every time', async (t) => {
  const lines: Array<{ level: number, msg: string, reason?: string }> = []
  const sink = new Writable({ write (chunk, _enc, cb) { lines.push(JSON.parse(String(chunk)) as { level: number, msg: string }); cb() } })
  const base = parseGatewayConfig({ argv: [], env: {} })
  const gw = await Gateway.create({ ...base, mqttPort: 0, adminPort: 0, dataDir: await tempDir(t), auth: 'file', authFile: await authFile(t), loginFreeFailures: 2, loginBackoffBaseMs: 60_000 }, pino({ level: 'warn' }, sink))
  t.after(() => gw.close())
  for (let i = 0; i < 3; i++) await assert.rejects(connectFrom(t, gw.mqttPort, '127.0.0.6', { clientId: 'sensor-1', username: 'sensor-1', password: 'no' }), /Bad username/i)
  for (let i = 0; i < 3; i++) await assert.rejects(connectFrom(t, gw.mqttPort, '127.0.0.6', { clientId: 'sensor-1', username: 'sensor-1', password: 'no' }), /Not authorized/i)
  const warn = (reason: string): number => lines.filter((l) => l.level === 40 && l.reason === reason).length
  assert.equal(warn('bad_credentials'), 1)
  assert.equal(warn('banned'), 1)
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_connect_refused_total', { reason: 'bad_credentials' }), 3)
  assert.equal(await metricValue(gw.metrics.registry, 'gateway_connect_refused_total', { reason: 'banned' }), 3)
})
