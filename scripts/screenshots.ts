/**
 * `node --import tsx scripts/screenshots.ts [--out docs/img]`: runs an ingest, a gateway
 * and 60 simulated devices (plus a few invalid payloads, so the dead-letter card has rows),
 * opens the gateway's and the ingest's pages in headless Chromium and saves
 * gateway-page.png and ingest-page.png. Needs /usr/bin/chromium.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import mqtt from 'mqtt'
import { createSimulation, simConfig } from '../device-sim/index.ts'
import { launchBrowser } from './browser.ts'

const ROOT = resolve(import.meta.dirname, '..')
const outDir = resolve(process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1]! : join(ROOT, 'docs', 'img'))
const cleanups: Array<() => unknown> = []
const t = { after: (fn: () => unknown) => { cleanups.unshift(fn) } }

function cli (entry: string, args: string[]): Promise<{ proc: ChildProcess, ready: Record<string, unknown> }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, entry), ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, LOG_LEVEL: 'warn' } })
  t.after(() => proc.kill('SIGKILL'))
  return new Promise((res, rej) => {
    proc.on('exit', (c) => rej(new Error(`${entry} exited ${c}`)))
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      try { const o = JSON.parse(l) as Record<string, unknown>; if (o.msg === 'ready') res({ proc, ready: o }) } catch {}
    })
  })
}

async function main (): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'screens-'))
  t.after(() => rm(dir, { recursive: true, force: true }))
  const ingest = await cli('ingest/main.ts', ['--port', '0', '--data-dir', join(dir, 'ingest'), '--token', 'gw1:screens-pad-0123', '--chaos-reject-rate', '0.002', '--chaos-seed', '7'])
  const ingestUrl = `http://127.0.0.1:${String(ingest.ready.port)}`
  const gw = await cli('gateway/main.ts', ['--gateway-id', 'gw1', '--data-dir', join(dir, 'gw'), '--mqtt-port', '0', '--admin-port', '0', '--upstream', ingestUrl, '--token', 'screens-pad-0123', '--host', '127.0.0.1', '--linger-ms', '300'])
  const broker = `mqtt://127.0.0.1:${String(gw.ready.mqttPort)}`
  const adminUrl = `http://127.0.0.1:${String(gw.ready.adminPort)}`
  const sim = createSimulation(simConfig({ broker, devices: 60, rate: 5, duration: 60, idPrefix: 'sensor-', progress: 'off' }))
  t.after(() => sim.stop())
  await sim.start()
  const bad = await mqtt.connectAsync(broker, { clientId: 'sensor-bad', reconnectPeriod: 0 })
  for (const p of ['{"seq":1,"values":{}}', '{"seq":2,"values":{"t":"x".repeat(300)}}', 'not json at all', '{"seq":3,"values":{"t":1e999}}']) await bad.publishAsync('devices/sensor-bad/readings', p, { qos: 1 })
  await bad.endAsync()
  await new Promise((r) => setTimeout(r, 25_000))
  const ctx = await launchBrowser(t, { width: 1280, height: 900 })
  const page = await ctx.newPage()
  await page.goto(adminUrl + '/')
  await page.fill('#dev-search', 'sensor-00')
  await new Promise((r) => setTimeout(r, 3000))
  await page.screenshot({ path: join(outDir, 'gateway-page.png'), fullPage: true })
  const ip = await ctx.newPage()
  await ip.goto(ingestUrl + '/')
  await new Promise((r) => setTimeout(r, 12_000))
  await ip.screenshot({ path: join(outDir, 'ingest-page.png'), fullPage: true })
  process.stderr.write(`wrote ${join(outDir, 'gateway-page.png')} and ${join(outDir, 'ingest-page.png')}\n`)
}

main().then(async () => { for (const fn of cleanups) await fn(); process.exit(0) }, async (err: unknown) => {
  process.stderr.write(`screenshots: ${(err as Error).stack ?? String(err)}\n`)
  for (const fn of cleanups) await fn()
  process.exit(1)
})
