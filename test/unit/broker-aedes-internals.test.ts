/**
 * gateway/broker/aedes-internals.ts, the one door to Aedes internals: on the Aedes that is
 * installed every shape the broker relies on is there, and a missing one is refused naming
 * it and both Aedes versions (installed, written for) instead of failing later somewhere else.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { Duplex } from 'node:stream'
import { createServer, type AddressInfo } from 'node:net'
import mqtt from 'mqtt'
import { test } from 'node:test'
import { Aedes, type Client } from 'aedes'
import { AEDES_WRITTEN_FOR, AedesShapeError, brokerInternals, clientInternals, installedAedesVersion, installReadGate, readGateOf, type ReadGate } from '../../gateway/broker/aedes-internals.ts'
import { defaultLimits } from '../../gateway/broker/limits-config.ts'
import { BoundedPersistence } from '../../gateway/broker/persistence.ts'
import { ReadingRoutes } from '../../gateway/broker/reading-routes.ts'
import { ROOT, waitFor } from '../helpers/index.ts'

test('package.json pins Aedes to the version the internals were written for, and that is the one installed', () => {
  const pkg = JSON.parse(readFileSync(`${ROOT}/package.json`, 'utf8')) as { dependencies: Record<string, string> }
  assert.equal(pkg.dependencies.aedes, AEDES_WRITTEN_FOR, 'an exact version: internals are patched')
  assert.equal(installedAedesVersion(), AEDES_WRITTEN_FOR)
  for (const dep of ['aedes-persistence', 'aedes-packet']) assert.match(pkg.dependencies[dep] ?? '', /^\d+\.\d+\.\d+$/, `${dep} is declared at an exact version (persistence.ts requires it)`)
})

test('the installed Aedes has every broker and client internal the gateway uses', async (t) => {
  const persistence = new BoundedPersistence(defaultLimits(), { limit: () => {}, expired: () => {} })
  const aedes = await Aedes.createBroker({ persistence: persistence as never })
  t.after(() => new Promise<void>((resolve) => aedes.close(() => resolve())))
  const b = brokerInternals(aedes)
  assert.equal(b.publishedHook, false, 'the default published hook is not taken for a hook')
  assert.equal(b.persistence, persistence)
  new ReadingRoutes().install(aedes, persistence)

  // a client of a stream that is no socket: Aedes builds its parser and deliveries all the same
  const conn = new Duplex({ read () {}, write (_c, _e, cb) { cb() } })
  const client = aedes.handle(conn as never) as Client
  t.after(() => conn.destroy())
  const c = clientInternals(client)
  assert.equal(typeof c.parser.parse, 'function')
  assert.equal(c.gone(), false)
  conn.destroy()
  assert.equal(c.gone(), true)
})

test('a missing internal is refused naming it and both Aedes versions', async (t) => {
  const message = new RegExp(`^Aedes ${installedAedesVersion().replace(/\./g, '\\.')} has no aedes\\.mq\\.on \\(subscriptions\\); the gateway's broker is written for Aedes ${AEDES_WRITTEN_FOR.replace(/\./g, '\\.')}`)
  const fake = { mq: { removeListener () {} }, publish () {}, published () {}, persistence: {} }
  assert.throws(() => brokerInternals(fake as never), (err: unknown) => err instanceof AedesShapeError && message.test(err.message) && err.internal === 'aedes.mq.on (subscriptions)')
  assert.throws(() => clientInternals({ deliverQoS () {}, deliver0 () {}, closed: false, conn: {} } as never), /has no client\._parser/)
  assert.throws(() => clientInternals({ _parser: { parse () {} }, deliverQoS () {}, closed: false, conn: {} } as never), /has no client\.deliver0/)

  // the routing shortcut counts persistent sessions only if they are the ones Aedes keeps
  const aedes = await Aedes.createBroker()
  t.after(() => new Promise<void>((resolve) => aedes.close(() => resolve())))
  const ours = new BoundedPersistence(defaultLimits(), { limit: () => {}, expired: () => {} })
  assert.throws(() => new ReadingRoutes().install(aedes, ours), /has no aedes\.persistence set to the bounded persistence/)
})

test('Aedes asks for the retained stream in the same tick as its subscribe event (the replay guard of limit-hooks.ts relies on it)', async (t) => {
  const aedes = await Aedes.createBroker()
  t.after(() => new Promise<void>((resolve) => aedes.close(() => resolve())))
  let inEventTick = false
  const seen: boolean[] = []
  aedes.on('subscribe', () => {
    inEventTick = true
    queueMicrotask(() => { inEventTick = false }) // the first thing that runs once the tick yields
  })
  const p = (aedes as unknown as { persistence: { createRetainedStreamCombi: (...a: unknown[]) => unknown } }).persistence
  const orig = p.createRetainedStreamCombi.bind(p)
  p.createRetainedStreamCombi = (...a: unknown[]) => { seen.push(inEventTick); return orig(...a) }
  const conn = new Duplex({ read () {}, write (_c, _e, cb) { cb() } })
  t.after(() => conn.destroy())
  aedes.handle(conn as never)
  // CONNECT (MQTT 3.1.1, clean session, client id "p"), then SUBSCRIBE "t" at QoS 0
  conn.push(Buffer.from([0x10, 0x0d, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, 0x70]))
  conn.push(Buffer.from([0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x74, 0x00]))
  await waitFor(() => seen.length > 0, { timeoutMs: 10_000, what: 'Aedes asked for the retained stream' })
  assert.deepEqual(seen, [true], 'asked for the retained stream before the subscribe event\'s tick yielded')
})

test('the read gate holds a client\'s socket reads and resumes them with the packets that completed meanwhile counted', async (t) => {
  const held: Array<{ topic: string, cb: (err: Error | null) => void }> = []
  const aedes = await Aedes.createBroker({
    authorizePublish (_client, packet, cb) { held.push({ topic: packet.topic, cb }) }
  })
  t.after(() => new Promise<void>((resolve) => aedes.close(() => resolve())))
  let gate: ReadGate | undefined
  const server = createServer((socket) => {
    const client = aedes.handle(socket) as Client
    gate = installReadGate(client)
    assert.equal(readGateOf(client), gate)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`, { clientId: 'gate-1', reconnectPeriod: 0 })
  t.after(() => c.endAsync(true))
  const acked: string[] = []
  const pub = (topic: string): void => { c.publish(topic, 'x', { qos: 1 }, (err) => { if (!err) acked.push(topic) }) }
  for (const n of [1, 2, 3]) pub(`t/${n}`)
  await waitFor(() => held.length === 3, { timeoutMs: 5000, what: 'three publishes handed to authorizePublish' })
  gate!.pause()
  // three packets complete while the reads are held: Aedes' own pause would lose their counts
  for (const h of held) h.cb(null)
  await waitFor(() => acked.length === 3, { timeoutMs: 5000, what: 'the three PUBACKs' })
  pub('t/4')
  pub('t/5')
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.equal(held.length, 3, 'nothing read while paused')
  gate!.resume()
  await waitFor(() => held.length === 5, { timeoutMs: 5000, what: 'the two publishes read after resume' })
  assert.deepEqual(held.map((h) => h.topic), ['t/1', 't/2', 't/3', 't/4', 't/5'])
  for (const h of held.slice(3)) h.cb(null)
  await waitFor(() => acked.length === 5, { timeoutMs: 5000, what: 'all five PUBACKs' })
})

test('a client without the socket read loop is refused naming it', () => {
  assert.throws(() => installReadGate({ _parsingBatch: 0 } as never), /has no client\._nextBatch \(the socket read loop\)/)
  assert.throws(() => installReadGate({ _nextBatch () {} } as never), /has no client\._parsingBatch/)
})
