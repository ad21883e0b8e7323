/** The topic rules for commands (gateway/broker/acl.ts; docs/security.md). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { filterMatches, publishVerdict, subscribeDenial, targetsOthersCommands, type Who } from '../../gateway/broker/acl.ts'

const anon = (clientId: string, local = true): Who => ({ principal: { role: 'anonymous' }, clientId, local })
const dev = (id: string): Who => ({ principal: { role: 'device', name: id }, clientId: id, local: false })
const app: Who = { principal: { role: 'app', name: 'dash' }, clientId: 'dash', local: false }

test('filterMatches follows MQTT matching', () => {
  assert.ok(filterMatches('#', 'devices/a/commands'))
  assert.ok(filterMatches('devices/+/commands', 'devices/a/commands'))
  assert.ok(filterMatches('devices/a/commands/#', 'devices/a/commands'))
  assert.ok(!filterMatches('devices/+/readings', 'devices/a/commands'))
  assert.ok(!filterMatches('devices/a/commands/answers', 'devices/a/commands'))
})

test('filters aimed at another device\'s commands are refused to everyone; catch-alls and readings wildcards are not', () => {
  for (const f of ['devices/+/commands', '+/+/commands', 'devices/b/commands', 'devices/b/commands/#', 'devices/+/commands/#', '+/+/commands/#']) {
    assert.ok(targetsOthersCommands(f, 'a'), f)
    assert.equal(subscribeDenial(anon('a'), f, 'local'), 'commands', f)
    assert.equal(subscribeDenial(app, f, 'local'), 'commands', f)
  }
  for (const f of ['#', 'devices/#', 'devices/+/+', 'devices/+/readings', 'devices/a/commands', 'devices/+/commands/answers']) assert.ok(!targetsOthersCommands(f, 'a'), f)
  assert.equal(subscribeDenial(anon('a'), 'devices/a/commands', 'local'), null)
  assert.equal(subscribeDenial(anon('a', false), 'devices/a/commands', 'local'), null, 'own commands, also from a remote address')
  assert.equal(subscribeDenial(anon('a'), 'devices/+/readings', 'local'), null)
  assert.equal(subscribeDenial(dev('a'), 'devices/a/commands', 'local'), null)
  assert.equal(subscribeDenial(dev('a'), 'devices/b/commands', 'local'), 'device_topic')
})

test('answers only by their own device, commands by nobody', () => {
  assert.deepEqual(publishVerdict(dev('a'), 'devices/a/commands/answers'), { kind: 'answer', deviceId: 'a' })
  assert.deepEqual(publishVerdict(anon('a'), 'devices/a/commands/answers'), { kind: 'answer', deviceId: 'a' })
  assert.equal(publishVerdict(dev('a'), 'devices/b/commands/answers').kind, 'deny')
  assert.equal(publishVerdict(app, 'devices/a/commands/answers').kind, 'deny')
  for (const w of [dev('a'), anon('a'), app]) assert.equal(publishVerdict(w, 'devices/a/commands').kind, 'deny')
  assert.deepEqual(publishVerdict(dev('a'), 'devices/a/readings'), { kind: 'readings', deviceId: 'a' })
})
