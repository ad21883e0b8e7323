/** Topic rules, address keys, login back-off, connect rate and the scrypt gate (no sockets). */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ownReadings, publishVerdict, subscribeDenial, type Who } from '../../gateway/broker/acl.ts'
import { AddressTable, addressKey, FailureBackoff, NetworkList } from '../../common/addresses.ts'
import { ConnectRate, Gate, GateFullError } from '../../gateway/broker/login-guard.ts'
import { isLoopback as isLoopbackHost } from '../../protocol/loopback.ts'
import { parseGatewayConfig } from '../../gateway/config.ts'

const device: Who = { principal: { role: 'device', name: 's1' }, clientId: 's1', local: false }
const app: Who = { principal: { role: 'app', name: 'dash' }, clientId: 'dash-1', local: false }
const anonFar: Who = { principal: { role: 'anonymous' }, clientId: 's2', local: false }
const anonNear: Who = { principal: { role: 'anonymous' }, clientId: 'tool', local: true }

test('publish rules: no $-topics for anyone; readings only by their own client id; receipts by nobody', () => {
  for (const who of [device, app, anonFar, anonNear]) {
    assert.equal(publishVerdict(who, '$SYS/x/new/clients').kind, 'deny')
    assert.equal(publishVerdict(who, '$share/g/t').kind, 'deny')
    assert.equal(publishVerdict(who, `devices/${who.clientId}/receipts`).kind, 'deny')
    assert.equal(publishVerdict(who, 'devices/other/readings').kind, 'deny')
  }
  assert.deepEqual(publishVerdict(device, 'devices/s1/readings'), { kind: 'readings', deviceId: 's1' })
  assert.deepEqual(publishVerdict(anonFar, 'devices/s2/readings'), { kind: 'readings', deviceId: 's2' })
  assert.equal(publishVerdict({ ...app, clientId: 'x' }, 'devices/x/readings').kind, 'deny', 'apps never publish readings')
  assert.equal(publishVerdict(device, 'site/lights').kind, 'deny', 'devices publish only their readings')
  assert.equal(publishVerdict(anonFar, 'site/lights').kind, 'allow')
  assert.equal(publishVerdict(app, 'site/lights').kind, 'allow')
})

test('the per-connection readings fast path gives publishVerdict\'s answer for every topic', () => {
  const ids = ['s1', 'sensor-0042', 'a/b', 'x+', 'y#', '$sys', '', 'devices', 'é-unicode', 'a'.repeat(200)]
  const principals: Who['principal'][] = [{ role: 'anonymous' }, { role: 'device', name: 's1' }, { role: 'app', name: 'dash' }]
  let fast = 0
  for (const id of ids) {
    for (const principal of principals) {
      const who: Who = { principal, clientId: id, local: true }
      const own = ownReadings(who)
      const topics = [`devices/${id}/readings`, `devices/${id}/readings/x`, `devices/${id}/receipts`, `devices/${id}x/readings`, 'devices/s1/readings', 'devices/a/b/readings', `$devices/${id}/readings`, 'other/topic']
      for (const topic of topics) {
        const viaFastPath = own !== null && topic === own.topic ? (fast++, own.verdict) : publishVerdict(who, topic)
        assert.deepEqual(viaFastPath, publishVerdict(who, topic), `${JSON.stringify(who)} on ${topic}`)
      }
    }
  }
  assert.ok(fast >= 6, `the fast path was taken (${fast})`)
  assert.equal(ownReadings({ principal: { role: 'app', name: 'dash' }, clientId: 's1', local: true }), null, 'apps publish no readings')
  assert.equal(ownReadings({ principal: { role: 'anonymous' }, clientId: 'a/b', local: true }), null, 'an id that is not a device id has no readings topic')
})

test('subscribe rules by policy', () => {
  const d = (who: Who, f: string, p: 'local' | 'apps' | 'all' = 'local'): string | null => subscribeDenial(who, f, p)
  assert.equal(d(device, 'devices/s1/receipts'), null)
  assert.equal(d(device, 'devices/s2/receipts'), 'device_topic')
  assert.equal(d(device, '#', 'all'), 'device_topic', 'devices are never widened by the policy')
  assert.equal(d(app, '#'), null)
  assert.equal(d(app, '$SYS/#', 'apps'), null)
  assert.equal(d(anonNear, '#'), null)
  assert.equal(d(anonNear, '$SYS/#'), null)
  assert.equal(d(anonNear, '#', 'apps'), 'wildcard')
  assert.equal(d(anonNear, '$SYS/#', 'apps'), 'dollar_topic')
  assert.equal(d(anonFar, '#'), 'wildcard')
  assert.equal(d(anonFar, 'devices/+/readings'), 'wildcard')
  assert.equal(d(anonFar, 'devices/s1/readings'), 'other_device')
  assert.equal(d(anonFar, 'devices/s2/readings'), 'other_device')
  assert.equal(d(anonFar, 'devices/s2/receipts'), null)
  assert.equal(d(anonFar, 'site/lights'), null)
  assert.equal(d(anonFar, '#', 'all'), null)
  assert.equal(d(anonFar, '$SYS/#', 'all'), 'dollar_topic', '$SYS never for remote anonymous clients')
})

test('address keys: IPv4 as is, IPv4-mapped to IPv4, IPv6 by /64; local networks', () => {
  assert.equal(addressKey('192.0.2.7'), '192.0.2.7')
  assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7')
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
  assert.equal(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64')
  assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64')
  assert.equal(addressKey(undefined), 'unknown')
  const local = new NetworkList(['127.0.0.0/8', '::1/128', '10.1.0.0/16'])
  assert.ok(local.has('127.0.0.2'))
  assert.ok(local.has('::ffff:127.0.0.1'))
  assert.ok(local.has('::1'))
  assert.ok(local.has('10.1.200.3'))
  assert.ok(!local.has('10.2.0.1'))
  assert.ok(!local.has('192.0.2.2'))
  assert.ok(!new NetworkList([]).has('127.0.0.1'))
  for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]']) assert.ok(isLoopbackHost(h), h)
  for (const h of ['0.0.0.0', '::', '192.0.2.2', 'gateway.local']) assert.ok(!isLoopbackHost(h), h)
})

test('the address table is bounded: least recently touched forgotten first', () => {
  const t = new AddressTable<number>(3)
  for (const k of ['a', 'b', 'c']) t.touch(k, () => 0)
  t.touch('a', () => 0)
  t.touch('d', () => 0)
  assert.equal(t.size, 3)
  assert.equal(t.peek('b'), undefined)
  assert.equal(t.evictions, 1)
  for (let i = 0; i < 10_000; i++) t.touch(`x${i}`, () => i)
  assert.equal(t.size, 3)
})

test('login back-off: free failures, then doubling bans up to the cap, forgotten after forgetMs', () => {
  let now = 0
  const b = new FailureBackoff({ freeFailures: 2, baseMs: 1000, maxMs: 5000, forgetMs: 60_000, maxAddresses: 100 }, () => now)
  assert.equal(b.fail('a'), 0)
  assert.equal(b.fail('a'), 0)
  assert.equal(b.bannedFor('a'), 0)
  assert.equal(b.fail('a'), 1000)
  assert.equal(b.bannedFor('a'), 1000)
  assert.equal(b.fail('a'), 2000)
  assert.equal(b.fail('a'), 4000)
  assert.equal(b.fail('a'), 5000)
  assert.equal(b.banned(), 1)
  assert.equal(b.bannedFor('b'), 0, 'other addresses are not affected')
  now += 5001
  assert.equal(b.bannedFor('a'), 0)
  now += 60_000
  assert.equal(b.fail('a'), 0, 'forgotten: the free failures start again')
})

test('connect rate: a token bucket per address', () => {
  let now = 0
  const r = new ConnectRate(2, 3, 100, () => now)
  assert.deepEqual([r.take('a'), r.take('a'), r.take('a'), r.take('a'), r.take('a')], [true, true, true, false, false])
  assert.equal(r.take('b'), true)
  now += 500
  assert.equal(r.take('a'), true)
  assert.equal(r.take('a'), false)
  assert.equal(new ConnectRate(0, 1, 10).take('a'), true, 'rate 0 = off')
})

test('the scrypt gate runs at most N at once and refuses beyond its queue', async () => {
  const g = new Gate(2, 3)
  let running = 0
  let peak = 0
  const job = async (): Promise<void> => {
    running++
    peak = Math.max(peak, running)
    await new Promise((r) => setTimeout(r, 5))
    running--
  }
  const runs = Array.from({ length: 5 }, () => g.run(job))
  await assert.rejects(g.run(job), GateFullError)
  await Promise.all(runs)
  assert.equal(peak, 2)
  assert.equal(g.peak, 2)
  assert.equal(g.running, 0)
  await assert.rejects(g.run(() => Promise.reject(new Error('boom'))), /boom/)
  assert.equal(g.running, 0, 'a failed check frees its slot')
})

test('config: --host defaults by auth mode; anonymous exposure and bad local networks are errors naming the field', () => {
  assert.equal(parseGatewayConfig({ argv: [], env: {} }).host, '127.0.0.1')
  assert.equal(parseGatewayConfig({ argv: ['--auth', 'file', '--auth-file', 'x'], env: {} }).host, '0.0.0.0')
  assert.equal(parseGatewayConfig({ argv: ['--host', 'localhost'], env: {} }).host, 'localhost')
  assert.throws(() => parseGatewayConfig({ argv: ['--host', '::'], env: {} }), /config host: --auth none on --host ::/)
  assert.throws(() => parseGatewayConfig({ argv: [], env: { GATEWAY_HOST: '192.0.2.2' } }), /--allow-anonymous/)
  assert.equal(parseGatewayConfig({ argv: ['--host', '0.0.0.0', '--allow-anonymous'], env: {} }).host, '0.0.0.0')
  assert.throws(() => parseGatewayConfig({ argv: ['--local-networks', '10.0.0.0/33'], env: {} }), /config localNetworks:/)
  assert.throws(() => parseGatewayConfig({ argv: ['--wildcard-subscribe', 'everyone'], env: {} }), /config wildcardSubscribe: must be one of local\|apps\|all/)
})
