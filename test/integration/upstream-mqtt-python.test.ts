/**
 * An independent consumer of the MQTT upstream in broker mode (issue 20): Python with
 * Debian's python3-paho-mqtt and cbor2, written from the format in docs/upstream-mqtt.md
 * (topic levels, gzip told by its first bytes, the v1 map), decodes every batch and
 * dedups by (gateway, epoch, p, s).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { test } from 'node:test'
import { connectDevice, publish, reading, startGateway } from '../helpers/gateway.ts'
import { tempDir, waitFor } from '../helpers/index.ts'
import { startMosquitto } from '../helpers/mosquitto.ts'
import { PYTHON, needTools } from '../helpers/tools.ts'

const SCRIPT = String.raw`
import gzip, json, sys, time, zlib
import cbor2
import paho.mqtt.client as mqtt

port, want = int(sys.argv[1]), int(sys.argv[2])
seen = {}

def on_message(c, u, m):
    levels = m.topic.split('/')  # gateways/{gatewayId}/batches/{partition}
    body = m.payload
    if body[:2] == b'\x1f\x8b':
        body = gzip.decompress(body)
    elif body[0] & 0x0f == 8 and body[0] >> 4 <= 7:
        body = zlib.decompress(body)
    b = cbor2.loads(body)
    assert b['v'] == 1 and b['gateway'] == levels[1], (b['v'], b['gateway'], levels)
    for p, s, device, seq, boot, ts, rx, values in b['items']:
        seen[(b['gateway'], b['epoch'], p, s)] = [device, seq, values['t']]

c = mqtt.Client(client_id='py-consumer', clean_session=True, protocol=mqtt.MQTTv311)
c.on_message = on_message
c.connect('127.0.0.1', port, keepalive=30)
c.loop_start()
r, mid = c.subscribe('gateways/+/batches/+', qos=1)
time.sleep(0.3)
print('ready', flush=True)
end = time.time() + 30
while time.time() < end and len(seen) < want:
    time.sleep(0.02)
c.disconnect(); c.loop_stop()
print(json.dumps(sorted(seen.values())), flush=True)
`

test('broker mode: a Python paho-mqtt + cbor2 consumer decodes every batch from the documented format', { timeout: 60_000 }, async (t) => {
  needTools('mosquitto', 'paho', 'cbor2')
  const broker = await startMosquitto(t)
  const dir = await tempDir(t, 'py-consumer-')
  const script = join(dir, 'consumer.py')
  await writeFile(script, SCRIPT)
  const py = spawn(PYTHON, [script, String(broker.port), '30'], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => { py.kill('SIGKILL') })
  const lines: string[] = []
  let stderr = ''
  py.stderr!.on('data', (b: Buffer) => { stderr += b.toString() })
  createInterface({ input: py.stdout! }).on('line', (l) => lines.push(l))
  await waitFor(() => lines[0] === 'ready', { what: `python subscribed (${stderr})` })
  // gzip, so the consumer has to tell it from CBOR by the first bytes
  const gw = await startGateway(t, { lingerMs: 50, upstream: [broker.url], gatewayId: 'gw-py', upstreamAck: 'broker', compression: 'gzip', batchMaxItems: 7 })
  await waitFor(() => gw.flusher.status().mqtt?.connected, { what: 'gateway connected' })
  const c = await connectDevice(t, gw.mqttPort, 'py-dev-1')
  for (let i = 1; i <= 30; i++) await publish(c, 'devices/py-dev-1/readings', reading(i))
  const out = await waitFor(() => lines[1], { timeoutMs: 30_000, what: `python output (${stderr})` })
  const got = JSON.parse(out) as [string, number, number][]
  assert.deepEqual(got, Array.from({ length: 30 }, (_, i) => ['py-dev-1', i + 1, 21.5]))
  await waitFor(() => gw.store.items === 0, { what: 'deleted on PUBACK' })
})
