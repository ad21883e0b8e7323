/**
 * What a new user could not see on the gateway's own surfaces:
 * - a gateway started without `--upstream` answered /readyz ready and its page showed
 *   nothing wrong, while no reading would ever leave the box: /readyz stays 200 (it takes,
 *   stores and acknowledges readings) but says `delivery: false` with the reason, /status
 *   says upstream `none`, and the page shows a notice;
 * - a reading on a wrong topic (`devices/sensor-1/reading`) was acknowledged and stored
 *   nowhere, with one info line in the log: the page lists it under "publishes on topics
 *   that store nothing";
 * - the dead-letter card's breakdown counted since the gateway started ("invalid payload 0")
 *   beside a list of 4 payload records kept from before a restart: it counts stored records.
 * The page parts run in headless Chromium (/usr/bin/chromium; fails, never skips, without it).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { launchBrowser, openPage } from '../../scripts/browser.ts'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { startFakeUpstream } from '../helpers/fake-upstream.ts'

type Ready = { ready: boolean, delivery: boolean, reasons: string[] }

async function get<T> (url: string): Promise<{ code: number, body: T }> {
  const r = await fetch(url)
  return { code: r.status, body: await r.json() as T }
}

test('without an upstream: /readyz 200 with delivery false and the reason, /status upstream none', async (t) => {
  const gw = await startGateway(t)
  const base = `http://127.0.0.1:${gw.adminPort}`
  const r = await get<Ready>(base + '/readyz')
  assert.equal(r.code, 200)
  assert.equal(r.body.ready, true)
  assert.equal(r.body.delivery, false)
  assert.match(r.body.reasons.join('; '), /no upstream configured \(--upstream\): ready for intake, not for delivery/)
  const s = await get<{ delivery: boolean, upstream: { state: string, lastError: string } }>(base + '/status')
  assert.equal(s.body.delivery, false)
  assert.equal(s.body.upstream.state, 'none')
  assert.match(s.body.upstream.lastError, /not for delivery/)
})

test('with an upstream: /readyz has delivery true and no reasons', async (t) => {
  const up = await startFakeUpstream(t)
  const gw = await startGateway(t, { upstream: [up.url], token: 'secret-pad-01234' })
  const r = await get<Ready>(`http://127.0.0.1:${gw.adminPort}/readyz`)
  assert.deepEqual([r.code, r.body], [200, { ready: true, delivery: true, reasons: [] }])
})

test('the page: a notice without an upstream, and the topics that store nothing', async (t) => {
  const gw = await startGateway(t)
  const ctx = await launchBrowser(t)
  const { page, errors } = await openPage(ctx, `http://127.0.0.1:${gw.adminPort}/`)
  await page.waitForSelector('#ready-pill.ok', { timeout: 10_000 })
  await page.waitForSelector('#notice:not([hidden])', { timeout: 10_000 })
  assert.match(await page.$eval('#notice', (e) => e.textContent ?? ''), /Ready for intake, not for delivery.*never sent/s)
  assert.equal(await page.isHidden('#banner'), true, 'not the red unready banner')
  assert.equal(await page.isHidden('#unstored-card'), true, 'no such publishes yet')

  const c = await connectDevice(t, gw.mqttPort, 'sensor-1')
  for (const seq of [1, 2, 3]) await publish(c, 'devices/sensor-1/reading', reading(seq))
  await publish(c, 'devices/sensor-1/readings', reading(1))
  const row = '#unstored tr[data-topic="devices/sensor-1/reading"]'
  await page.waitForSelector(row, { timeout: 10_000 })
  const cells = await page.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent))
  assert.deepEqual(cells, ['devices/sensor-1/reading', '3', 'sensor-1'])
  assert.match(await page.$eval('#unstored-card', (e) => e.textContent ?? ''), /Publishes on topics that store nothing.*3 since start.*acknowledged \(PUBACK\)/s)
  assert.deepEqual(errors, [], 'no console errors on the page')
})

test('the page: the dead-letter breakdown counts the stored records, those from before a restart included', async (t) => {
  const dataDir = await tempDir(t)
  const first = await startGateway(t, { dataDir })
  const c = await connectDevice(t, first.mqttPort, 'odd-1')
  for (let i = 0; i < 4; i++) await publish(c, 'devices/odd-1/readings', `{"seq":${i + 1},"values":{}}`)
  await c.endAsync()
  await first.close()
  const gw = await startGateway(t, { dataDir })
  const ctx = await launchBrowser(t)
  const { page, errors } = await openPage(ctx, `http://127.0.0.1:${gw.adminPort}/`)
  // the list shows the 4 payload records kept from the first run; the bar must say 4 too
  await page.waitForSelector('#dlq-table tbody tr', { timeout: 10_000 })
  const bar = async (): Promise<Record<string, string>> => Object.fromEntries(await page.$$eval('#dlq-bars .bar-row', (rows) => rows.map((r) => [r.querySelector('.bar-label')!.textContent, r.querySelector('.bar-value')!.textContent])))
  await waitFor(async () => (await bar())['invalid payload'] === '4', { timeoutMs: 10_000, what: 'invalid payload 4 on the page' })
  assert.equal((await page.$$('#dlq-table tbody tr')).length, 4)
  assert.match(await page.$eval('#devices thead', (e) => e.textContent ?? ''), /dead-lettered since start/)
  assert.deepEqual(errors, [])
})
