/**
 * mqtt-packet's debug calls are no-ops unless DEBUG is set (gateway/broker/quiet-debug.ts);
 * with DEBUG set, they still print.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { test } from 'node:test'
import { ROOT } from '../helpers/index.ts'

// Loads the broker module as the gateway does, then parses one PINGREQ with mqtt-packet.
const SCRIPT = `
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
await import('./gateway/broker/index.ts')
const fromAedes = createRequire(fileURLToPath(import.meta.resolve('aedes')))
const fromPacket = createRequire(fromAedes.resolve('mqtt-packet'))
const debug = fromPacket('debug')
const parser = fromPacket('mqtt-packet').parser()
let packets = 0
parser.on('packet', () => { packets++ })
parser.parse(Buffer.from([0xc0, 0x00]))
console.log(JSON.stringify({ quieted: debug.quieted === true, packets, parserEnabled: debug('mqtt-packet:parser').enabled, otherIsReal: 'useColors' in debug('aedes:test') }))
`

function run (env: Record<string, string>): { out: Record<string, unknown>, stderr: string } {
  const { DEBUG: _drop, ...base } = process.env
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', SCRIPT], { cwd: ROOT, env: { ...base, ...env }, encoding: 'utf8', timeout: 60_000 })
  assert.equal(r.status, 0, r.stderr)
  return { out: JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>, stderr: r.stderr }
}

test('without DEBUG, mqtt-packet gets no-op debug functions; it still parses', () => {
  const { out, stderr } = run({})
  assert.deepEqual(out, { quieted: true, packets: 1, parserEnabled: false, otherIsReal: true })
  assert.doesNotMatch(stderr, /mqtt-packet/)
})

test('with DEBUG=mqtt-packet:*, the real debug prints as before', () => {
  const { out, stderr } = run({ DEBUG: 'mqtt-packet:*' })
  assert.equal(out.quieted, false)
  assert.equal(out.packets, 1)
  assert.equal(out.parserEnabled, true)
  assert.match(stderr, /mqtt-packet:parser/)
})
