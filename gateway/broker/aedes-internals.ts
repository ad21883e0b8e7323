/**
 * The one door to Aedes internals. Aedes 1.x has no public way to do what the broker needs
 * at these places, so it reaches into the library, here and nowhere else:
 *
 * | internal | Aedes 1.2 source | used by |
 * | --- | --- | --- |
 * | the emitter `aedes.mq` (`on`, `removeListener`) | aedes.js | reading-routes.ts: counts subscriptions |
 * | `aedes.publish`, replaced; the `published` option (default `defaultPublished`) | aedes.js | reading-routes.ts: readings nobody subscribed to skip routing |
 * | `aedes.persistence`: the object given to `createBroker` | aedes.js | persistence.ts is the one Aedes calls |
 * | a client's `_parser.parse` | lib/client.js | guard.ts: packet size guard |
 * | a client's `deliverQoS`, `deliver0`, `closed`, `conn` | lib/client.js | limit-deliveries.ts: no writes to a closed client |
 * | `persistence.createRetainedStreamCombi` called in the tick of the `subscribe` event | lib/handlers/subscribe.js | limit-hooks.ts, persistence.ts `replayClient`: no retained replay to a closed client |
 * | `aedes.id`, `aedes.counter` (a packet's brokerId/brokerCounter), `aedes.clients`, a client's `subscriptions` and `deliverQoS` called with a packet of ours, `persistence.outgoingEnqueue` for a persistent session, `outgoingStream` and `outgoingClearMessageId` (a gone device's queued commands dropped) | aedes.js, lib/client.js | commands.ts: a command written into its device's own session only, never routed to other subscribers |
 * | a client's `_nextBatch`, `_parsingBatch`, `_paused` (the socket read loop) | lib/client.js | intake/admission.ts through `installReadGate`: socket reads held under overload |
 * | mqtt-packet's `debug`, in the CommonJS module cache | mqtt-packet (Aedes' dependency) | quiet-debug.ts: no-op debug calls |
 *
 * Each shape is checked where it is first needed: the broker's at startup (`brokerInternals`,
 * from `Broker.create`), a client's when its connection is accepted (`clientInternals`). A
 * missing one fails with `AedesShapeError`, naming the internal, the Aedes version installed
 * and the one these were written for: package.json pins Aedes to that version, so an upgrade
 * is a decision that starts here.
 *
 * The last two rows are not checked at startup, on purpose:
 * - The same-tick order is no shape: it is the order of two calls inside Aedes' SUBSCRIBE
 *   handler (`emit('subscribe')`, a `$SYS` publish, then `createRetainedStreamCombi`, nothing
 *   asynchronous between). Only driving a client through CONNECT and SUBSCRIBE shows it, on
 *   the gateway's broker (a phantom client in its sessions, metrics and `$SYS` topics) or on
 *   a second one made at every start: either changes what the gateway does. So
 *   test/unit/broker-aedes-internals.test.ts checks it on the installed Aedes (and fails
 *   when the event comes a tick late).
 * - quiet-debug.ts must run before Aedes loads (mqtt-packet binds its debug functions when
 *   it is first required), so before there is a broker to check; and a missing shape there
 *   costs allocations and CPU, not correctness: failing the start for it would turn a
 *   slowdown into an outage. It stays best effort, imported by index.ts before Aedes, and
 *   test/unit/quiet-debug.test.ts checks that it takes effect on the installed Aedes.
 */
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { Aedes, Client, PublishPacket } from 'aedes'
import { EdgeError } from '../../protocol/errors.ts'

/** The Aedes release these shapes were read from and tested against (package.json pins it). */
export const AEDES_WRITTEN_FOR = '1.2.0'

let installed: string | undefined
/** The Aedes version in node_modules (its package.json; its `exports` hide the file from a plain require). */
export function installedAedesVersion (): string {
  if (installed !== undefined) return installed
  try {
    const req = createRequire(fileURLToPath(import.meta.resolve('aedes')))
    installed = String((req('./package.json') as { version?: unknown }).version)
  } catch {
    installed = 'unknown'
  }
  return installed
}

/**
 * An Aedes internal the broker relies on is not where it was: the gateway cannot run safely
 * on this Aedes, and retrying will not change that. `internal` names it.
 */
export class AedesShapeError extends EdgeError {
  static override readonly code = 'EDGE_ERR_AEDES_SHAPE'
  override name = 'AedesShapeError'
  constructor (readonly internal: string, opts: { cause?: unknown } = {}) {
    super(`Aedes ${installedAedesVersion()} has no ${internal}; the gateway's broker is written for Aedes ${AEDES_WRITTEN_FOR} (gateway/broker/aedes-internals.ts lists what it relies on)`, { ...opts, retryable: false })
  }
}

export type Listener = (...args: unknown[]) => unknown
export type Emitter = {
  on (topic: string, notify: Listener, done?: () => void): unknown
  removeListener (topic: string, notify: Listener, done?: () => void): unknown
}
export type Publish = (packet: PublishPacket, client: Client | null | (() => void), done?: (err?: Error) => void) => void

export type BrokerInternals = {
  /** The emitter every subscription, online or restored, is registered on. */
  mq: Emitter
  /** `aedes.publish` as it is now (bound), and a way to put another in its place. */
  publish: Publish
  replacePublish (p: Publish): void
  /** A `published` hook other than Aedes' default is set: it must see every publish. */
  publishedHook: boolean
  /** The persistence Aedes calls. */
  persistence: unknown
}

function fn (v: unknown, internal: string): void {
  if (typeof v !== 'function') throw new AedesShapeError(internal)
}

/** The broker-level internals, after checking each one is there. */
export function brokerInternals (aedes: Aedes): BrokerInternals {
  const a = aedes as unknown as { mq?: Partial<Emitter>, publish?: unknown, published?: unknown, persistence?: unknown }
  const mq = a.mq
  if (mq === null || typeof mq !== 'object') throw new AedesShapeError('emitter aedes.mq')
  fn(mq.on, 'aedes.mq.on (subscriptions)')
  fn(mq.removeListener, 'aedes.mq.removeListener (unsubscriptions)')
  fn(a.publish, 'aedes.publish')
  fn(a.published, 'published hook aedes.published')
  if (a.persistence === null || typeof a.persistence !== 'object') throw new AedesShapeError('aedes.persistence')
  const publish = (a.publish as Publish).bind(aedes)
  return {
    mq: mq as Emitter,
    publish,
    replacePublish: (p) => { a.publish = p },
    publishedHook: (a.published as { name?: string }).name !== 'defaultPublished',
    persistence: a.persistence
  }
}

export type Deliver = (packet: unknown, cb: () => void) => void
export type ClientInternals = {
  /** The parser Aedes hands every socket chunk to. */
  parser: { parse: (buf: Buffer) => unknown }
  deliverQoS: Deliver
  deliver0: Deliver
  replaceDeliveries (qos: Deliver, qos0: Deliver): void
  /** Aedes marked the client closed, or its socket is destroyed. */
  gone (): boolean
  /** The peer's address: the only name a client has before CONNECT. */
  remoteAddress: string | undefined
}

type RawClient = {
  _parser?: { parse?: unknown }
  deliverQoS?: unknown
  deliver0?: unknown
  closed?: unknown
  conn?: { destroyed?: boolean, remoteAddress?: string }
}

/** A client's internals, after checking each one is there (called once per connection). */
export function clientInternals (client: Client): ClientInternals {
  const c = client as unknown as RawClient
  const parser = c._parser
  if (parser === null || typeof parser !== 'object') throw new AedesShapeError('client._parser')
  fn(parser.parse, 'client._parser.parse (the packet parser)')
  fn(c.deliverQoS, 'client.deliverQoS')
  fn(c.deliver0, 'client.deliver0')
  if (typeof c.closed !== 'boolean') throw new AedesShapeError('client.closed')
  const conn = c.conn
  if (conn === null || typeof conn !== 'object') throw new AedesShapeError('client.conn (the socket)')
  return {
    parser: parser as ClientInternals['parser'],
    deliverQoS: c.deliverQoS as Deliver,
    deliver0: c.deliver0 as Deliver,
    replaceDeliveries: (qos, qos0) => { c.deliverQoS = qos; c.deliver0 = qos0 },
    gone: () => c.closed === true || conn.destroyed === true,
    remoteAddress: conn.remoteAddress
  }
}

/**
 * Holds a client's socket reads (the intake's overload admission, intake/admission.ts).
 * Aedes reads a socket in `nextBatch`, called by the socket's `readable` event and by the
 * completion of every packet it parsed, counting the packets still being handled in
 * `_parsingBatch`; its own `pause()` makes `nextBatch` return early, which drops those
 * completions' counts, so after `resume()` a client with more than one packet finished while
 * paused is never read again. The gate counts the completions it swallows and gives them
 * back on resume, then reads if nothing is still being handled.
 */
export type ReadGate = {
  /** No more socket reads until `resume` (what is buffered stays in the socket). */
  pause (): void
  resume (): void
  readonly paused: boolean
}

type RawReads = { _nextBatch?: unknown, _parsingBatch?: unknown, _paused?: unknown }
const READ_GATE = Symbol('readGate')

/** Installs the read gate of a client Aedes has just made for a socket (before any packet is parsed). */
export function installReadGate (client: Client): ReadGate {
  const c = client as unknown as RawReads & { [READ_GATE]?: ReadGate }
  fn(c._nextBatch, 'client._nextBatch (the socket read loop)')
  if (typeof c._parsingBatch !== 'number') throw new AedesShapeError('client._parsingBatch (packets being handled)')
  const next = c._nextBatch as (err?: Error | null) => void
  let paused = false
  let owed = 0
  // packets take `client._nextBatch` as their completion when Aedes hands them over, so
  // every packet parsed from here on completes through this wrapper
  c._nextBatch = (err?: Error | null): void => {
    if (paused && !err) { owed++; return }
    next(err)
  }
  const gate: ReadGate = {
    pause () {
      if (paused) return
      paused = true
      c._paused = true // the `readable` listener (Aedes' own nextBatch) returns early
    },
    resume () {
      if (!paused) return
      paused = false
      c._paused = false
      // the completions swallowed while paused, then one read attempt (next() takes one off)
      c._parsingBatch = Math.max(0, (c._parsingBatch as number) - owed) + 1
      owed = 0
      next()
    },
    get paused () { return paused }
  }
  c[READ_GATE] = gate
  return gate
}

/** The read gate of a client the broker accepted (undefined for one it did not make). */
export function readGateOf (client: Client): ReadGate | undefined {
  return (client as unknown as { [READ_GATE]?: ReadGate })[READ_GATE]
}

/** The peer's address of a client, without the checks (for log lines about offenders). */
export function remoteAddressOf (client: Client): string {
  return (client as unknown as RawClient).conn?.remoteAddress ?? 'unknown'
}

export type CommandInternals = {
  /** The connected client with this id, if any. */
  client (id: string): Client | undefined
  /** The QoS `client` subscribed `topic` (an exact filter) at, or null. */
  subscribedQoS (client: Client, topic: string): number | null
  /**
   * Removes the messages on `topic` from a persistent session's queue (a device that went
   * away): Aedes would resend them at its next connect, past any expiry or recall; the
   * commands core sends what is still due itself.
   */
  forgetQueued (clientId: string, topic: string): Promise<void>
  /** Writes a QoS 1 PUBLISH into `client`'s session alone (its persistent session keeps it until the PUBACK). */
  deliver (client: Client, topic: string, payload: Buffer, cb: () => void): void
}

/** What commands.ts needs of Aedes, after checking each one is there (at startup). */
export function commandInternals (aedes: Aedes): CommandInternals {
  const a = aedes as unknown as { id?: unknown, counter?: unknown, clients?: unknown, persistence?: { outgoingEnqueue?: unknown } }
  if (typeof a.id !== 'string') throw new AedesShapeError('aedes.id (a packet\'s brokerId)')
  if (typeof a.counter !== 'number') throw new AedesShapeError('aedes.counter (a packet\'s brokerCounter)')
  if (a.clients === null || typeof a.clients !== 'object') throw new AedesShapeError('aedes.clients')
  const persistence = a.persistence
  if (persistence === null || typeof persistence !== 'object') throw new AedesShapeError('aedes.persistence')
  fn(persistence.outgoingEnqueue, 'aedes.persistence.outgoingEnqueue')
  const enqueue = persistence.outgoingEnqueue as (sub: { clientId: string }, packet: unknown) => Promise<void>
  const p = persistence as { outgoingStream?: unknown, outgoingClearMessageId?: unknown }
  fn(p.outgoingStream, 'aedes.persistence.outgoingStream')
  fn(p.outgoingClearMessageId, 'aedes.persistence.outgoingClearMessageId')
  const stream = p.outgoingStream as (client: { id: string }) => AsyncIterable<{ topic?: string, messageId?: number }>
  const clear = p.outgoingClearMessageId as (client: { id: string }, packet: { messageId: number }) => Promise<unknown>
  type RawSubClient = { subscriptions?: Record<string, { qos?: number } | undefined>, deliverQoS?: unknown }
  return {
    client: (id) => (a.clients as Record<string, Client | undefined>)[id],
    subscribedQoS: (client, topic) => {
      const subs = (client as unknown as RawSubClient).subscriptions
      if (subs === null || typeof subs !== 'object') throw new AedesShapeError('client.subscriptions')
      const s = subs[topic]
      return s === undefined ? null : (s.qos ?? 0)
    },
    forgetQueued: async (clientId, topic) => {
      const ids: number[] = []
      for await (const q of stream.call(persistence, { id: clientId })) if (q.topic === topic && typeof q.messageId === 'number') ids.push(q.messageId)
      for (const messageId of ids) await clear.call(persistence, { id: clientId }, { messageId })
    },
    deliver: (client, topic, payload, cb) => {
      const c = client as unknown as RawSubClient
      fn(c.deliverQoS, 'client.deliverQoS')
      const brokerCounter = (a.counter as number) + 1
      a.counter = brokerCounter
      const packet = { cmd: 'publish', topic, payload, qos: 1, retain: false, dup: false, brokerId: a.id as string, brokerCounter }
      const write = (): void => { (c.deliverQoS as Deliver).call(client, packet, cb) }
      // a persistent session: queued as Aedes queues a routed message (its PUBACK then names
      // the packet in the 'ack' event, and Aedes resends it on the session's next connect)
      if (client.clean === false) enqueue.call(persistence, { clientId: client.id }, packet).then(write, write)
      else write()
    }
  }
}
