/**
 * The operator pages in headless Chromium: the gateway's page loads without
 * console errors, its numbers match /status within one refresh, a chart moves while the
 * simulator runs, the devices table finds a device, the unready banner appears when the
 * upstream refuses the token; the ingest's page loads and shows the gateway and the latest
 * readings. Needs /usr/bin/chromium (fails, never skips, without it).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createSimulation, simConfig } from '../../device-sim/index.ts'
import { pageBytes } from '../../gateway/admin/page/index.ts'
import { createIngest } from '../../ingest/index.ts'
import { launchBrowser, openPage } from '../../scripts/browser.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { tempDir, waitFor } from '../helpers/index.ts'

type Status = { buffered: { items: number }, dlq: { items: number }, clients: { connected: number } }

test('operator pages: gateway page live and consistent with /status, banner, devices; ingest page', async (t) => {
  assert.ok(pageBytes() < 100 * 1024, `page and assets ${pageBytes()} bytes`)
  const ingest = await createIngest({ port: 0, dataDir: await tempDir(t, 'pages-ingest-'), token: ['gw1:right-pad-012345', 'gw2:other-pad-012345'] })
  t.after(() => ingest.close())
  const ingestUrl = `http://127.0.0.1:${ingest.port}`
  const gw = await startGateway(t, { gatewayId: 'gw1', upstream: [ingestUrl], token: 'right-pad-012345', lingerMs: 100 })
  const base = `http://127.0.0.1:${gw.adminPort}`
  const ctx = await launchBrowser(t)
  const { page, errors } = await openPage(ctx, base + '/')
  await page.waitForSelector('#ready-pill.ok', { timeout: 10_000 })

  // a device that sent one invalid payload: the dead-letter count is non-zero
  const bad = await connectDevice(t, gw.mqttPort, 'odd-device-42')
  await publish(bad, 'devices/odd-device-42/readings', '{"values":{}}')
  await publish(bad, 'devices/odd-device-42/readings', reading(1))

  const sim = createSimulation(simConfig({ broker: `mqtt://127.0.0.1:${gw.mqttPort}`, devices: 8, rate: 25, duration: 6, idPrefix: 'page-', progress: 'off' }))
  t.after(() => sim.stop())
  await sim.start()
  await sim.waitConnected(15_000)

  // a chart moves: the readings line gets a non-zero value and its path changes
  const inValue = (): Promise<number> => page.$eval('#v-in', (e) => Number(e.getAttribute('data-value')))
  await waitFor(async () => await inValue() > 0, { timeoutMs: 15_000, what: 'readings in/s above 0 on the page' })
  const path = (): Promise<string | null> => page.$eval('#c-rates path[data-series="0"]', (e) => e.getAttribute('d'))
  const d1 = await path()
  await waitFor(async () => { const d2 = await path(); return d2 !== null && d2 !== d1 && d2.length > 20 }, { timeoutMs: 5000, what: 'the rates chart redrawn with new points' })

  // the devices table finds a device
  await page.fill('#dev-search', 'odd-device')
  await page.waitForSelector('#devices tr[data-device="odd-device-42"]', { timeout: 5000 })
  // the filter applies on the next render: wait for the other rows to go
  const rows = (): Promise<(string | null)[]> => page.$$eval('#devices tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-device')))
  await waitFor(async () => (await rows()).length === 1, { timeoutMs: 5000, what: 'the devices table filtered to one row' })
  assert.deepEqual(await rows(), ['odd-device-42'])
  const deadCell = await page.$eval('#devices tr[data-device="odd-device-42"] td:last-child', (e) => e.textContent)
  assert.equal(deadCell, '1')
  await page.fill('#dev-search', 'page-')
  await page.waitForSelector('#devices tr[data-device^="page-"]', { timeout: 5000 })

  await sim.done
  await sim.stop()
  // the numbers match /status within one refresh (1 s)
  for (const [id, pick] of [['v-dlq', (s: Status) => s.dlq.items], ['v-buffered', (s: Status) => s.buffered.items], ['v-clients', (s: Status) => s.clients.connected]] as const) {
    await waitFor(async () => {
      const before = pick(await (await fetch(base + '/status')).json() as Status)
      await new Promise((r) => setTimeout(r, 1200))
      const shown = Number(await page.$eval(`#${id}`, (e) => e.getAttribute('data-value')))
      const after = pick(await (await fetch(base + '/status')).json() as Status)
      return shown === before || shown === after
    }, { timeoutMs: 15_000, what: `#${id} matches /status` })
  }
  assert.equal(await page.$eval('#v-dlq', (e) => e.getAttribute('data-value')), '1')
  assert.equal(await page.isHidden('#banner'), true)

  // the ingest's page
  const ip = await openPage(ctx, ingestUrl + '/')
  await ip.page.waitForSelector('#gateways tr[data-gateway="gw1"]', { timeout: 10_000 })
  await ip.page.waitForSelector('#latest tr[data-device^="page-"]', { timeout: 10_000 })
  const storedTotal = await ip.page.$eval('#gateways tr[data-gateway="gw1"] td:nth-child(7)', (e) => Number(e.textContent!.replace(/,/g, '')))
  assert.ok(storedTotal > 0)

  // a gateway whose upstream refuses its token: the banner says so
  const wrong = await startGateway(t, { gatewayId: 'gw2', upstream: [ingestUrl], token: 'not-the-token-pa', lingerMs: 50 })
  const dev = await connectDevice(t, wrong.mqttPort, 'lonely')
  await publish(dev, 'devices/lonely/readings', reading(1))
  const w = await openPage(ctx, `http://127.0.0.1:${wrong.adminPort}/`)
  await w.page.waitForSelector('#banner:not([hidden])', { timeout: 15_000 })
  const text = await w.page.$eval('#banner', (e) => e.textContent ?? '')
  assert.match(text, /refused our token \(401\)/)
  assert.equal(await w.page.$eval('#ready-pill', (e) => e.textContent), 'not ready')

  assert.deepEqual(errors, [], 'no console errors on the gateway page')
  assert.deepEqual(ip.errors, [], 'no console errors on the ingest page')
  assert.deepEqual(w.errors, [], 'no console errors on the unready page')
})

test('operator pages: a command to a device shows on both pages (id, state, counts, link), fleet-scoped at the ingest', async (t) => {
  const READ_ALL = 'read-all-pad-0123456'
  const READ_NORTH = 'read-north-pad-01234'
  const CMD = 'cmd-all-pad-01234567'
  const ingest = await createIngest({ port: 0, dataDir: await tempDir(t, 'pages-cmd-ingest-'), token: ['gw1:right-pad-012345'], readToken: [`*:${READ_ALL}`, `north:${READ_NORTH}`], commandToken: [`*:${CMD}`] })
  t.after(() => ingest.close())
  const ingestUrl = `http://127.0.0.1:${ingest.port}`
  const gw = await startGateway(t, { gatewayId: 'gw1', upstream: [ingestUrl], token: 'right-pad-012345', lingerMs: 100 })
  const base = `http://127.0.0.1:${gw.adminPort}`
  const ctx = await launchBrowser(t)

  // no command yet: the gateway's panel says what it is for
  const g = await openPage(ctx, base + '/')
  await g.page.waitForSelector('#ready-pill.ok', { timeout: 10_000 })
  await g.page.waitForSelector('#cmd-empty:not([hidden])', { timeout: 5000 })
  assert.match(await g.page.$eval('#cmd-empty', (e) => e.textContent ?? ''), /Commands sent to devices/)
  // the link: idle until its first long poll is answered (a command, or the wait running out), never failing
  await g.page.waitForSelector('#cmd-link[data-state="idle"], #cmd-link[data-state="ok"]', { timeout: 5000 })

  // a device on a persistent session that takes commands and does not answer (the command stays delivered)
  const dev = await connectDevice(t, gw.mqttPort, 'cmd-dev-1', { clean: false })
  await dev.subscribeAsync('devices/cmd-dev-1/commands', { qos: 1 })
  let id = ''
  await waitFor(async () => {
    const r = await fetch(`${ingestUrl}/v1/devices/cmd-dev-1/commands`, { method: 'POST', headers: { authorization: `Bearer ${CMD}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'set-interval', args: { seconds: 30 }, ttlMs: 600_000 }) })
    if (r.status !== 202) return false // 404 unknown_device until the gateway reported the device
    id = ((await r.json()) as { id: string }).id
    return true
  }, { timeoutMs: 15_000, what: 'the command accepted once the gateway reported the device' })
  const readAs = async (token: string, path: string): Promise<Record<string, unknown>> => await (await fetch(ingestUrl + path, { headers: { authorization: `Bearer ${token}` } })).json() as Record<string, unknown>
  await waitFor(async () => ((await readAs(READ_ALL, '/v1/stats')).commands as Record<string, number>).delivered === 1, { timeoutMs: 15_000, what: 'the command delivered' })

  // the gateway's page: the row with the command's id and state, the counts, nothing pending upstream
  await g.page.waitForSelector(`#commands tr[data-command="${id}"][data-state="delivered"]`, { timeout: 10_000 })
  const row = await g.page.$$eval(`#commands tr[data-command="${id}"] td`, (tds) => tds.map((td) => td.textContent))
  assert.deepEqual(row.slice(0, 4), [id, 'cmd-dev-1', 'set-interval', 'delivered'])
  assert.match(row[5] ?? '', /min|s$/, 'expires in')
  assert.equal(await g.page.isHidden('#cmd-empty'), true)
  await g.page.waitForSelector('#cmd-link[data-state="ok"]', { timeout: 5000 })
  await waitFor(async () => await g.page.$eval('#cmd-held', (e) => e.getAttribute('data-value')) === '1', { timeoutMs: 5000, what: 'one command held on the page' })
  assert.deepEqual(JSON.parse(await g.page.$eval('#cmd-states', (e) => e.getAttribute('data-value') ?? '{}')), { delivered: 1 })
  await waitFor(async () => await g.page.$eval('#cmd-reports', (e) => e.getAttribute('data-value')) === '0', { timeoutMs: 10_000, what: 'no report pending upstream' })
  const listed = await (await fetch(base + '/commands?limit=5')).json() as { enabled: boolean, total: number, commands: { id: string, state: string, device: string }[] }
  assert.equal(listed.enabled, true)
  assert.deepEqual(listed.commands.map((c) => [c.id, c.device, c.state]), [[id, 'cmd-dev-1', 'delivered']])

  // the ingest's data, fleet-scoped: fleet * sees the command and the counts; fleet north neither
  const all = (await readAs(READ_ALL, '/ui/live')).commands as { counts: Record<string, number> | null, recent: { id: string, state: string, gateway: string, history: number }[] }
  assert.equal(all.counts?.delivered, 1)
  assert.deepEqual(all.recent.map((c) => [c.id, c.state, c.gateway, c.history]), [[id, 'delivered', 'gw1', 3]])
  const north = (await readAs(READ_NORTH, '/ui/live')).commands as { counts: unknown, recent: unknown[] }
  assert.deepEqual(north, { counts: null, windowMs: 600_000, recent: [] })
  assert.equal((await readAs(READ_NORTH, '/v1/stats')).commands, undefined, 'the store counts every fleet: fleet * only')

  // the ingest's page, after its read token
  const ip = await openPage(ctx, ingestUrl + '/')
  await ip.page.waitForSelector('#token-form:not([hidden])', { timeout: 10_000 })
  await ip.page.fill('#read-token', READ_ALL)
  await ip.page.click('#token-form button')
  await ip.page.waitForSelector(`#commands tr[data-command="${id}"][data-state="delivered"]`, { timeout: 10_000 })
  const irow = await ip.page.$$eval(`#commands tr[data-command="${id}"] td`, (tds) => tds.map((td) => td.textContent))
  assert.deepEqual(irow.slice(0, 6), [id, 'cmd-dev-1', 'set-interval', 'delivered', 'gw1', '3'])
  assert.equal(JSON.parse(await ip.page.$eval('#cmd-counts', (e) => e.getAttribute('data-counts') ?? '{}')).delivered, 1)
  assert.equal(await ip.page.isHidden('#cmd-empty'), true)

  assert.deepEqual(g.errors, [], 'no console errors on the gateway page')
  assert.deepEqual(ip.errors.filter((e) => !/401/.test(e)), [], 'no console errors on the ingest page (but the 401 that asks for the token)')
})
