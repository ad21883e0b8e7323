/** --auth file, the ACL of docs/design.md section 9, and CLI config errors. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import mqtt from 'mqtt'
import { hashPassword } from '../../gateway/broker/auth.ts'
import { ROOT, tempDir, waitFor } from '../helpers/index.ts'
import { publish, reading, startGateway } from '../helpers/gateway.ts'

async function authGateway (t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t)
  const file = join(dir, 'auth.json')
  await writeFile(file, JSON.stringify({
    devices: { 'sensor-1': await hashPassword('s1-pass', 1024), 'sensor-2': await hashPassword('s2-pass', 1024) },
    apps: { dashboard: await hashPassword('dash-pass', 1024) }
  }))
  return startGateway(t, { auth: 'file', authFile: file })
}

function connect (port: number, opts: mqtt.IClientOptions): Promise<mqtt.MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, ...opts })
    c.once('connect', () => resolve(c))
    c.once('error', (err) => { c.end(true); reject(err) })
  })
}

test('auth file: devices and apps authenticate; wrong passwords and impostors are refused', async (t) => {
  const gw = await authGateway(t)
  const dev = await connect(gw.mqttPort, { clientId: 'sensor-1', username: 'sensor-1', password: 's1-pass' })
  t.after(() => dev.end(true))
  await publish(dev, 'devices/sensor-1/readings', reading(1))
  assert.equal(gw.store.items, 1)
  await assert.rejects(connect(gw.mqttPort, { clientId: 'sensor-1', username: 'sensor-1', password: 'nope' }), /Bad username or password/i)
  // a device's client id must be its own id
  await assert.rejects(connect(gw.mqttPort, { clientId: 'sensor-2', username: 'sensor-1', password: 's1-pass' }), /Bad username or password/i)
  await assert.rejects(connect(gw.mqttPort, { clientId: 'x' }), /Bad username or password/i)
  const app = await connect(gw.mqttPort, { clientId: 'dash-1', username: 'dashboard', password: 'dash-pass' })
  t.after(() => app.end(true))
  // apps may subscribe to every device's readings; devices only to their receipts
  const granted = await app.subscribeAsync('devices/+/readings', { qos: 1 })
  assert.equal(granted[0]!.qos, 1)
  // SUBACK 0x80 for another device's receipts (MQTT.js turns it into an error)
  await assert.rejects(dev.subscribeAsync('devices/sensor-2/receipts', { qos: 1 }), (err: Error & { packet?: { granted?: number[] } }) => {
    assert.deepEqual(err.packet?.granted, [128])
    return true
  })
  const own = await dev.subscribeAsync('devices/sensor-1/receipts', { qos: 1 })
  assert.equal(own[0]!.qos, 1)
  const got: string[] = []
  app.on('message', (topic) => got.push(topic))
  await publish(dev, 'devices/sensor-1/readings', reading(2))
  await waitFor(() => got.length === 1, { what: 'app receives the reading' })
  // an app cannot publish readings
  await assert.rejects(publish(app, 'devices/sensor-1/readings', reading(3)), /closed/)
  assert.equal(gw.store.items, 2)
})

test('CLI: a bad value is a startup error naming the field, exit code 2', async () => {
  const run = (args: string[]): Promise<{ code: number | null, err: string }> => new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'gateway/main.ts', ...args], { cwd: ROOT, env: { ...process.env, GATEWAY_MQTT_PORT: '' } })
    let err = ''
    p.stderr.on('data', (c) => { err += String(c) })
    p.on('exit', (code) => resolve({ code, err }))
  })
  let r = await run(['--mqtt-port', '99999'])
  assert.equal(r.code, 2)
  assert.match(r.err, /config mqttPort: must be in 0\.\.65535/)
  r = await run(['--durability', 'sometimes'])
  assert.match(r.err, /config durability: must be one of process\|power/)
  r = await run(['--no-such-flag', '1'])
  assert.match(r.err, /unknown flag --no-such-flag/)
  r = await run(['--upstream', 'http://127.0.0.1:1'])
  assert.match(r.err, /config token: --upstream needs --token/)
})
