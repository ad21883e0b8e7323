/**
 * Another MQTT client stack against the limits of issue 9: Debian's python3-paho-mqtt
 * (/usr/bin/python3) uses retained messages and an offline queue within normal limits, as
 * Paho's 3.1.1 interoperability suite does, against the gateway CLI with default flags:
 * the retained message is replayed to a new subscriber with RETAIN set, and the 20 QoS 1
 * messages published while a clean_session=False subscriber was away reach it, in order,
 * when it comes back. (The full Paho suite run is in docs/security-limits.md.)
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnCli, tempDir } from '../helpers/index.ts'
import { PYTHON, needTools } from '../helpers/tools.ts'

const SCRIPT = String.raw`
import json, sys, time
import paho.mqtt.client as mqtt

port = int(sys.argv[1])
out = {}

def client(cid, clean=True):
    c = mqtt.Client(client_id=cid, clean_session=clean, protocol=mqtt.MQTTv311)
    c.connect('127.0.0.1', port, keepalive=30)
    c.loop_start()
    return c

def wait(pred, s=10):
    end = time.time() + s
    while time.time() < end and not pred():
        time.sleep(0.02)
    return pred()

pub = client('py-pub')
pub.publish('py/retained', b'kept', qos=1, retain=True).wait_for_publish()

got = []
sub = mqtt.Client(client_id='py-sub', clean_session=True)
sub.on_message = lambda c, u, m: got.append([m.topic, m.payload.decode(), bool(m.retain)])
sub.connect('127.0.0.1', port, keepalive=30)
sub.loop_start()
sub.subscribe('py/#', qos=1)
wait(lambda: len(got) >= 1)
out['retained'] = got[:]
sub.disconnect(); sub.loop_stop()

away = client('py-away', clean=False)
r, _ = away.subscribe('pyq/#', qos=1)
time.sleep(0.3)
away.disconnect(); away.loop_stop()
for i in range(20):
    pub.publish('pyq/x', str(i).encode(), qos=1).wait_for_publish()

queued = []
back = mqtt.Client(client_id='py-away', clean_session=False)
back.on_message = lambda c, u, m: queued.append(m.payload.decode())
back.connect('127.0.0.1', port, keepalive=30)
back.loop_start()
wait(lambda: len(queued) >= 20)
time.sleep(0.3)
out['queued'] = queued
back.disconnect(); back.loop_stop()
pub.disconnect(); pub.loop_stop()
print(json.dumps(out))
`

test('python3-paho-mqtt: a retained message and an offline queue within the default limits work', { timeout: 60_000 }, async (t) => {
  needTools('paho')
  const dir = await tempDir(t, 'paho-limits-')
  const gw = await spawnCli(t, 'gateway/main.ts', ['--data-dir', join(dir, 'gw'), '--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--durability', 'process'], { env: { LOG_LEVEL: 'warn' } })
  const script = join(dir, 'limits_check.py') // not paho.py: that would shadow the paho package
  writeFileSync(script, SCRIPT)
  const r = spawnSync(PYTHON, [script, String(gw.ready.mqttPort)], { encoding: 'utf8', timeout: 45_000 })
  assert.equal(r.status, 0, `paho script failed: ${r.stderr}`)
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { retained: Array<[string, string, boolean]>, queued: string[] }
  assert.deepEqual(out.retained, [['py/retained', 'kept', true]])
  assert.deepEqual(out.queued, Array.from({ length: 20 }, (_, i) => String(i)))
})
