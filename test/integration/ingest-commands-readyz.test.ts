/**
 * The ingest's /readyz reports the commands' broker connection (commands/mqtt.ts), as it
 * reports the batch consumer's: with `--mqtt-broker`, gateways' command reports and the
 * commands going down to them travel on a connection of their own, and /readyz said 200
 * while that one was down. With a real Mosquitto: the commands connection alone knocked off
 * (another client takes its session) -> 503 naming it while the batch consumer stays up;
 * back -> 200; the broker gone -> 503 naming it; the broker back -> 200.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { createIngest, type Ingest } from '../../ingest/index.ts'
import { freePort } from '../../bench/lib/procs.ts'
import { silentLogger } from '../helpers/gateway.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { needTools } from '../helpers/tools.ts'

type Body = { status: string, reasons?: string[], mqtt?: { connected: boolean, subscribed: boolean }, commandsMqtt?: { broker: string, connected: boolean, subscribed: boolean } }

async function readyz (ingest: Ingest): Promise<{ code: number, body: Body }> {
  const r = await fetch(`http://127.0.0.1:${ingest.port}/readyz`)
  return { code: r.status, body: await r.json() as Body }
}

const until = (ingest: Ingest, ok: (r: { code: number, body: Body }) => boolean, what: string): Promise<{ code: number, body: Body }> =>
  waitFor(async () => { const r = await readyz(ingest); return ok(r) ? r : undefined }, { timeoutMs: 15_000, intervalMs: 50, what })

test('ingest /readyz: unready with a reason naming the commands connection while it is down, ready when it is back', async (t) => {
  needTools('mosquitto')
  const port = await freePort()
  const url = `mqtt://127.0.0.1:${port}`
  let broker = await startMosquitto(t, { port })
  const clientId = `ingest-crz-${process.pid}`
  // reconnects 3 s apart: the window in which the commands connection is down after a takeover
  const ingest = await createIngest({ port: 0, host: '127.0.0.1', dataDir: await tempDir(t, 'ingest-cmd-readyz-'), token: ['gwA:sec-gwA-pad-0123'], mqttBroker: url, mqttConnections: 1, mqttClientId: clientId, mqttReconnectMs: 3000 }, { logger: silentLogger })
  t.after(() => ingest.close())

  const up = await until(ingest, (r) => r.code === 200, 'ingest ready with the broker up')
  assert.deepEqual(up.body.commandsMqtt, { broker: url, connected: true, subscribed: true })

  // another client takes the commands connection's session: that connection alone is down
  const intruder = await mqtt.connectAsync(url, { clientId: `${clientId}-commands`, protocolVersion: 5, clean: true, reconnectPeriod: 0 })
  intruder.on('error', () => {}) // it is taken over in turn when the ingest reconnects
  t.after(() => intruder.endAsync(true))
  const alone = await until(ingest, (r) => r.code === 503, 'ingest unready once its commands connection is taken over')
  assert.deepEqual(alone.body.reasons, [`broker ${url}: the commands connection is down`])
  assert.equal(alone.body.commandsMqtt?.connected, false)
  assert.deepEqual([alone.body.mqtt?.connected, alone.body.mqtt?.subscribed], [true, true], 'the batch consumer stayed up')
  const back = await until(ingest, (r) => r.code === 200, 'ingest ready once its commands connection is back')
  assert.deepEqual(back.body.commandsMqtt, { broker: url, connected: true, subscribed: true })
  assert.equal(back.body.reasons, undefined)

  // the broker gone, then back on the same port
  await broker.kill()
  const gone = await until(ingest, (r) => r.code === 503 && r.body.commandsMqtt?.connected === false, 'ingest unready once the broker is gone')
  assert.ok(gone.body.reasons?.includes(`broker ${url}: the commands connection is down`), gone.body.reasons?.join('; '))
  broker = await startMosquitto(t, { port })
  const again = await until(ingest, (r) => r.code === 200, 'ingest ready once the broker is back')
  assert.deepEqual(again.body.commandsMqtt, { broker: url, connected: true, subscribed: true })
  assert.equal(ingest.commandsMqtt?.ready, true, 'readyz agrees with the commands connection')
})
