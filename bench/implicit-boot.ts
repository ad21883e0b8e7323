/**
 * What the implicit-boot rule (docs/design.md, "Devices without boot") costs in duplicates:
 * devices that send `seq` without `boot` next to a baseline of devices that send `boot`, in
 * the same run, through repeated kill -9 of the gateway (`--durability process`). MQTT.js
 * clients resend their unacknowledged readings after each restart with DUP=0, and the
 * restarted gateway has no fingerprints, so a resent reading that was already stored opens
 * a new implicit boot and is stored again. Every reading carries a unique value `n`, so
 * the ingest's copy count per `n` shows duplicates and losses.
 *
 *   npm run bench:implicit-boot -- [--devices 10] [--kills 5] [--interval-ms 20]
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import mqtt, { type MqttClient } from 'mqtt'
import { freePort } from './lib/procs.ts'

const arg = (name: string, dflt: number): number => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? Number(process.argv[i + 1]) : dflt }
const DEVICES = arg('devices', 10)
const KILLS = arg('kills', 5)
const INTERVAL_MS = arg('interval-ms', 20)
const ROOT = resolve(import.meta.dirname, '..')
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

const dir = mkdtempSync(join(tmpdir(), 'bench-implicit-boot-'))
// the ingest as its own process: bench/ imports protocol/ only (docs/layout.md)
const ingestPort = await freePort()
const ingest = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'ingest/main.ts'), '--port', String(ingestPort), '--token', 'gw1:secret-pad-01234', '--data-dir', join(dir, 'ingest')],
  { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, LOG_LEVEL: 'warn' } })
await new Promise<void>((res) => { ingest.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('"ready"')) res() }) })
const url = `http://127.0.0.1:${ingestPort}`
const mqttPort = await freePort()

function startGateway (): Promise<ChildProcess> {
  const p = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'gateway/main.ts'), '--host', '127.0.0.1', '--mqtt-port', String(mqttPort), '--admin-port', '0',
    '--data-dir', join(dir, 'gateway'), '--durability', 'process', '--upstream', url, '--token', 'secret-pad-01234', '--linger-ms', '50'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, LOG_LEVEL: 'warn' } })
  return new Promise((res) => { p.stdout!.on('data', (d: Buffer) => { if (d.toString().includes('"ready"')) res(p) }) })
}

type Dev = { id: string, boot: boolean, client: MqttClient, next: number, acked: Set<number> }
let gw = await startGateway()
const devs: Dev[] = []
for (let i = 0; i < 2 * DEVICES; i++) {
  const boot = i % 2 === 0
  const id = `${boot ? 'with-boot' : 'no-boot'}-${i}`
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: id, clean: true, reconnectPeriod: 200, connectTimeout: 5000 })
  client.on('error', () => {})
  devs.push({ id, boot, client, next: 1, acked: new Set() })
}
let running = true
const pumps = devs.map(async (d) => {
  while (running) {
    const n = d.next++
    const body = JSON.stringify(d.boot ? { seq: n, boot: 1, values: { n } } : { seq: n, values: { n } })
    d.client.publish(`devices/${d.id}/readings`, body, { qos: 1 }, (err) => { if (!err) d.acked.add(n) })
    await sleep(INTERVAL_MS)
  }
})
for (let k = 0; k < KILLS; k++) {
  await sleep(1500)
  gw.kill('SIGKILL')
  await new Promise((r) => gw.once('exit', r))
  gw = await startGateway()
  console.error(`kill ${k + 1}/${KILLS}: gateway restarted`)
}
await sleep(1500)
running = false
await Promise.all(pumps)
await sleep(3000) // resends after the last restart are acknowledged
for (const d of devs) await d.client.endAsync(true)
console.error('devices stopped; waiting for the ingest to settle')
let drained = false
for (let i = 0; i < 100 && !drained; i++) {
  await sleep(200)
  const st = await (await fetch(`${url}/v1/stats`)).json() as { stored: number }
  drained = st.stored > 0 && await sleep(1000).then(async () => (await (await fetch(`${url}/v1/stats`)).json() as { stored: number }).stored === st.stored)
}
const totals = { 'with boot (baseline)': { acked: 0, stored: 0, duplicates: 0, lost: 0, boots: 0 }, 'without boot': { acked: 0, stored: 0, duplicates: 0, lost: 0, boots: 0 } }
for (const d of devs) {
  const t = totals[d.boot ? 'with boot (baseline)' : 'without boot']
  const seen = new Map<number, number>()
  const boots = new Set<string>()
  let cursor: string | null = null
  do {
    const r = await (await fetch(`${url}/v1/devices/${d.id}/readings?limit=1000${cursor ? `&cursor=${cursor}` : ''}`)).json() as { readings: Array<{ boot: unknown, values: { n: number } }>, next: string | null }
    for (const x of r.readings) { seen.set(x.values.n, (seen.get(x.values.n) ?? 0) + 1); boots.add(String(x.boot)) }
    cursor = r.next
  } while (cursor)
  t.acked += d.acked.size
  for (const c of seen.values()) { t.stored += c; t.duplicates += c - 1 }
  for (const n of d.acked) if (!seen.has(n)) t.lost++
  t.boots += boots.size
}
gw.kill('SIGKILL')
ingest.kill('SIGTERM')
await new Promise((r) => ingest.once('exit', r))
rmSync(dir, { recursive: true, force: true })
console.log(JSON.stringify({ devices: DEVICES, kills: KILLS, intervalMs: INTERVAL_MS, totals }, null, 1))
for (const [k, t] of Object.entries(totals)) console.log(`${k}: acked ${t.acked}, stored ${t.stored}, duplicates ${t.duplicates} (${(100 * t.duplicates / Math.max(1, t.acked)).toFixed(2)}% of acked), lost ${t.lost}, boots seen ${t.boots} over ${DEVICES} devices`)
process.exit(0)
