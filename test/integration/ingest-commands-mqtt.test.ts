/**
 * Commands over the cloud broker (ingest/commands/mqtt.ts) with a real Mosquitto: the ingest
 * publishes a gateway's commands on `gateways/{id}/commands` when they are created and again
 * every --command-resend-ms until the gateway reports them, applies reports from
 * `gateways/{id}/command-reports` and answers on `gateways/{id}/command-results`; a gateway
 * the tokens config does not list is refused.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { createIngest } from '../../ingest/index.ts'
import { decodeCommandsMessage, decodeReportsResponse, encodeReportsRequest, gatewayCommandsTopic, gatewayReportResultsTopic, gatewayReportsTopic, type CommandsMessage, type Presence, type Report, type ReportsResponse } from '../../protocol/commands.ts'
import { silentLogger } from '../helpers/gateway.ts'
import { bearer, call, jsonOf } from '../helpers/http.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

const CMD = 'cmd-default-0123456789'

test('commands over MQTT: published at once and again until reported; reports answered after the commit; an unlisted gateway refused', async (t) => {
  needTools('mosquitto')
  const broker = await startMosquitto(t)
  const ingest = await createIngest({
    port: 0, dataDir: await tempDir(t, 'ingest-cmd-mqtt-'), token: ['gwA:sec-gwA-pad-0123'], commandToken: [`default:${CMD}`],
    mqttBroker: broker.url, mqttConnections: 1, mqttClientId: `ingest-cmd-${process.pid}`, commandResendMs: 300
  }, { logger: silentLogger })
  t.after(() => ingest.close())
  const base = `http://127.0.0.1:${ingest.port}`

  const gw = await mqtt.connectAsync(broker.url, { clientId: 'gwA', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 600 }, reconnectPeriod: 0 })
  t.after(() => gw.endAsync(true))
  const commands: CommandsMessage[] = []
  const results: { topic: string, res: ReportsResponse }[] = []
  gw.on('message', (topic, payload) => {
    if (topic === gatewayCommandsTopic('gwA')) commands.push(decodeCommandsMessage(payload))
    else results.push({ topic, res: decodeReportsResponse(payload) })
  })
  await gw.subscribeAsync([gatewayCommandsTopic('gwA'), gatewayReportResultsTopic('gwA'), gatewayReportResultsTopic('gwX')], { qos: 1 })
  await waitFor(() => ingest.commandsMqtt?.ready, { timeoutMs: 15_000, what: 'the ingest subscribed to command reports' })

  let n = 0
  const publishReports = async (gateway: string, reports: Report[], presence: Presence[] = []): Promise<ReportsResponse> => {
    const batch = `m${++n}`
    await gw.publishAsync(gatewayReportsTopic(gateway), encodeReportsRequest({ gateway, batch, reports, presence }), { qos: 1 })
    const got = await waitFor(() => results.find((r) => r.res.batch === batch), { timeoutMs: 10_000, what: `results of ${batch}` })
    assert.equal(got.topic, gatewayReportResultsTopic(gateway))
    return got.res
  }

  await publishReports('gwA', [], [['dev1', 1, Date.now()]])
  const posted = await call(`${base}/v1/devices/dev1/commands`, { headers: { 'content-type': 'application/json', ...bearer(CMD) }, body: Buffer.from(JSON.stringify({ name: 'reboot' })) })
  assert.equal(posted.status, 202, posted.body.toString())
  const id = jsonOf<{ id: string }>(posted).id
  const offers = (): number => commands.filter((m) => m.commands.some((c) => c.id === id)).length
  await waitFor(() => offers() >= 1, { timeoutMs: 10_000, what: 'the command published to the gateway' })
  await waitFor(() => offers() >= 2, { timeoutMs: 10_000, what: 'the command published again after --command-resend-ms' })

  const now = Date.now()
  const res = await publishReports('gwA', [[id, 'dev1', 'at-gateway', now], [id, 'dev1', 'delivered', now], [id, 'dev1', 'completed', now, { up: true }]])
  assert.deepEqual(res.results, [[0, 0], [1, 0], [2, 0]])
  const g = jsonOf<{ state: string, result: unknown }>(await call(`${base}/v1/commands/${id}`, { headers: bearer(CMD) }))
  assert.equal(g.state, 'completed')
  assert.deepEqual(g.result, { up: true })

  // a gateway the tokens config does not list: every report rejected, nothing applied
  const other = jsonOf<{ id: string }>(await call(`${base}/v1/devices/dev1/commands`, { headers: { 'content-type': 'application/json', ...bearer(CMD) }, body: Buffer.from(JSON.stringify({ name: 'x' })) }))
  const refused = await publishReports('gwX', [[other.id, 'dev1', 'at-gateway', Date.now()]])
  assert.equal(refused.results[0]?.[1], 3)
  assert.match(String(refused.results[0]?.[2]), /not listed/)
  assert.equal(jsonOf<{ state: string }>(await call(`${base}/v1/commands/${other.id}`, { headers: bearer(CMD) })).state, 'queued')
  assert.match((await call(`${base}/metrics`)).body.toString(), /ingest_command_refusals_total\{reason="forbidden"\} 1/)
})
