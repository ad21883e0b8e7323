/**
 * gateway/broker/aedes-internals.ts, the one door to Aedes internals: on the Aedes that is
 * installed every shape the broker relies on is there, and a missing one is refused naming
 * it and both Aedes versions (installed, written for) instead of failing later somewhere else.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { Duplex } from 'node:stream'
import { test } from 'node:test'
import { Aedes, type Client } from 'aedes'
import { AEDES_WRITTEN_FOR, AedesShapeError, brokerInternals, clientInternals, installedAedesVersion } from '../../gateway/broker/aedes-internals.ts'
import { defaultLimits } from '../../gateway/broker/limits-config.ts'
import { BoundedPersistence } from '../../gateway/broker/persistence.ts'
import { ReadingRoutes } from '../../gateway/broker/reading-routes.ts'
import { ROOT } from '../helpers/index.ts'

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
