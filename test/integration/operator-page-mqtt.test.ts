/**
 * The gateway's operator page shows the MQTT upstream's connection, its
 * in-flight batches and the oldest unanswered one, from the same sample as /status; the row
 * says "not connected" when the broker dies. Real Mosquitto as the cloud broker, headless
 * Chromium (fails without /usr/bin/chromium, as operator-pages.test.ts does).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createIngest } from '../../ingest/index.ts'
import { launchBrowser, openPage } from '../../scripts/browser.ts'
import { connectDevice, publish, reading, silentLogger, startGateway } from '../helpers/gateway.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

test('operator page: the MQTT upstream row shows connected, in flight and oldest unanswered; not connected when the broker dies', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const ingest = await createIngest({ port: 0, dataDir: await tempDir(t, 'page-mqtt-ingest-'), mqttBroker: broker.url, mqttAllowUnlistedGateways: true, mqttClientId: `ingest-page-${process.pid}` }, { logger: silentLogger })
  t.after(() => ingest.close())
  await waitFor(() => ingest.mqtt?.ready, { what: 'ingest subscribed' })
  const gw = await startGateway(t, { gatewayId: 'gw-page', upstream: [broker.url], lingerMs: 50 })
  await waitFor(() => gw.flusher.status().mqtt?.subscribed, { what: 'gateway subscribed to its results' })

  const ctx = await launchBrowser(t)
  const { page, errors } = await openPage(ctx, `http://127.0.0.1:${gw.adminPort}/`)
  await page.waitForSelector('#up-mqtt-row:not([hidden])', { timeout: 10_000 })
  const cell = (): Promise<string> => page.$eval('#up-mqtt', (e) => e.textContent ?? '')
  await waitFor(async () => (await cell()).startsWith('connected, results subscribed · 0 in flight · oldest unanswered –'), { timeoutMs: 10_000, what: 'the broker row connected' })
  assert.equal(await page.$eval('#up-mqtt', (e) => e.className), 'wrap state-ok')

  // a reading goes through the broker and is answered: nothing stays in flight
  const dev = await connectDevice(t, gw.mqttPort, 'page-dev')
  await publish(dev, 'devices/page-dev/readings', reading(1))
  await waitFor(async () => ((await (await fetch(`http://127.0.0.1:${ingest.port}/v1/stats`)).json()) as { stored: number }).stored === 1, { what: 'the reading stored through the broker' })

  // the broker dies: the row says so (and the /status it comes from agrees)
  await broker.kill()
  await waitFor(async () => (await cell()).startsWith('not connected'), { timeoutMs: 15_000, what: 'the broker row not connected' })
  assert.equal(await page.$eval('#up-mqtt', (e) => e.className), 'wrap state-bad')
  const st = await (await fetch(`http://127.0.0.1:${gw.adminPort}/status`)).json() as { upstream: { mqtt?: { connected: boolean } } }
  assert.equal(st.upstream.mqtt?.connected, false)
  assert.deepEqual(errors, [], 'no console errors on the page')
})

test('operator page: the broker row says "no consumer subscribed" while the broker\'s PUBACKs say so, and the batches stay buffered', async (t) => {
  needTools('mosquitto', 'chromium')
  const broker = await startMosquitto(t)
  const gw = await startGateway(t, { gatewayId: 'gw-page-ns', upstream: [broker.url], upstreamAck: 'broker', lingerMs: 50, retryBaseMs: 20, retryMaxMs: 200 })
  await waitFor(() => gw.flusher.status().mqtt?.connected, { what: 'gateway connected' })
  const dev = await connectDevice(t, gw.mqttPort, 'page-ns-dev')
  await publish(dev, 'devices/page-ns-dev/readings', reading(1))
  const ctx = await launchBrowser(t)
  const { page, errors } = await openPage(ctx, `http://127.0.0.1:${gw.adminPort}/`)
  await page.waitForSelector('#up-mqtt-row:not([hidden])', { timeout: 10_000 })
  const cell = (): Promise<string> => page.$eval('#up-mqtt', (e) => e.textContent ?? '')
  await waitFor(async () => (await cell()).startsWith('connected (broker ack) · no consumer subscribed · '), { timeoutMs: 10_000, what: 'the broker row says no consumer' })
  assert.equal(await page.$eval('#up-mqtt', (e) => e.className), 'wrap state-bad')
  assert.equal(gw.store.items, 1, 'kept')
  assert.deepEqual(errors, [], 'no console errors on the page')
})
