/**
 * Aedes persistence with bounds. Aedes keeps retained messages, the queues of
 * persistent (clean=false) sessions and their subscriptions in its persistence; the stock
 * in-memory one (aedes-persistence 11) bounds none of them: 1,000 retained 60 KiB messages
 * are all kept and replayed to every `#` subscriber, a persistent subscriber that went
 * away queues every message published while it is away, and an abandoned session never
 * expires. This class implements the same asynchronous interface and
 * - keeps retained messages itself, within `maxRetainedMessages` / `maxRetainedBytes`
 *   (the broker refuses an over-quota retained PUBLISH before it gets here; a racing one
 *   that still arrives is not stored and is counted), and stops a retained replay as soon
 *   as its client is closed (Aedes replays the whole store on every SUBSCRIBE, and used to
 *   keep writing it to a client that had already hung up);
 * - keeps the outgoing queues itself: at most `maxQueuedMessages` per session and
 *   `maxQueuedBytesTotal` bytes over all sessions (payload + QUEUED_MESSAGE_OVERHEAD_BYTES each); beyond them a message is not
 *   queued for that session (Mosquitto drops the newest too). Aedes expects a packet it
 *   delivers to be in the queue (`outgoingUpdate` throws 'no such packet' and the client
 *   is closed): here an unqueued packet is still delivered to a connected client, just not
 *   kept for retransmission;
 * - tracks persistent sessions (online or offline since when): one offline for
 *   `sessionExpirySec` is removed with its subscriptions, queue and QoS 2 state, and past
 *   `maxSessions` the longest-offline one goes first;
 * - records the principal that owns each persistent session, so no other principal takes it over: a CONNECT by another
 *   principal with that client id makes `claimSession` remove the session (subscriptions,
 *   queue, inflight and inbound QoS 2 state) before Aedes restores it, so the newcomer starts
 *   clean and never sees what was kept for the owner (docs/security.md).
 * - reports the persistent sessions' subscriptions, and the end of every session whoever
 *   ended it (Aedes on a clean CONNECT, or this class: expiry, eviction, a takeover), to its
 *   watchers through one method, `endSession` (reading-routes.ts counts sessions that way).
 * Inbound QoS 2 packets are kept here too (see incomingGetPacket). Subscriptions (a topic trie) and wills stay in the stock
 * implementation, to which the rest is delegated. Nothing here is on disk: a restart
 * forgets sessions and retained messages, as before.
 */
import { createRequire } from 'node:module'
import { Readable } from 'node:stream'
import type { BrokerLimits } from './limits-config.ts'

type Pkt = {
  cmd: string
  topic: string
  payload?: Buffer | string
  qos?: number
  retain?: boolean
  messageId?: number
  brokerId?: string
  brokerCounter?: number
  [k: string]: unknown
}
type ClientRef = { id: string, closed?: boolean }
type Sub = { clientId: string }

/** The stock aedes-persistence in-memory class (asynchronous API), as far as it is used here. */
type Inner = {
  setup (broker: unknown): Promise<void>
  addSubscriptions (client: ClientRef, subs: unknown[]): Promise<void>
  removeSubscriptions (client: ClientRef, subs: string[]): Promise<void>
  subscriptionsByClient (client: ClientRef): Promise<unknown[]>
  countOffline (): Promise<{ subsCount: number, clientsCount: number }>
  subscriptionsByTopic (topic: string): Promise<Sub[]>
  cleanSubscriptions (client: ClientRef): Promise<void>
  incomingStorePacket (client: ClientRef, packet: Pkt): Promise<void>
  incomingGetPacket (client: ClientRef, packet: Pkt): Promise<Pkt>
  incomingDelPacket (client: ClientRef, packet: Pkt): Promise<void>
  cleanIncoming (client: ClientRef): Promise<void>
  putWill (client: ClientRef, packet: Pkt): Promise<void>
  getWill (client: ClientRef): Promise<Pkt | undefined>
  delWill (client: ClientRef): Promise<Pkt | undefined>
  streamWill (brokers?: unknown): Readable
  getClientList (topic: string): Readable
  destroy (): Promise<void>
}
const require = createRequire(import.meta.url)
const InnerMemory = require('aedes-persistence/asyncPersistence.js') as new () => Inner
const AedesPacket = require('aedes-packet') as new (p: Pkt) => Pkt
const DONE = Promise.resolve()
/** "No such packet" for the inbound QoS 2 store: an expected answer, so no stack to build. */
const NO_SUCH_PACKET: Error = Object.assign(Object.create(Error.prototype) as Error, { name: 'Error', message: 'no such packet' })

export type PersistenceLimit = 'retained_messages' | 'retained_bytes' | 'queued_messages' | 'queued_bytes_total' | 'sessions'

/**
 * Told about the subscriptions of persistent sessions as they change (reading-routes.ts
 * counts them). Every end of a session reaches `ended` through one method, `endSession`,
 * whether Aedes ended it (a CleanSession=1 CONNECT) or this class did (expiry, eviction past
 * `maxSessions`, a takeover by another principal): a watcher never keeps a session that is
 * gone.
 */
export type SessionWatcher = {
  added (clientId: string, filters: readonly string[]): void
  removed (clientId: string, filters: readonly string[]): void
  ended (clientId: string): void
}

export type PersistenceEvents = {
  /** A bound was hit for `clientId` (a message not queued for it, a retained message not stored, its session evicted). */
  limit: (limit: PersistenceLimit, clientId: string) => void
  expired: (clientId: string) => void
}

/** What one queued message costs besides its payload (packet object, array slot): counted so a flood of tiny messages is bounded too. */
export const QUEUED_MESSAGE_OVERHEAD_BYTES = 256
const payloadBytes = (p: Pkt): number => p.payload === undefined ? 0 : typeof p.payload === 'string' ? Buffer.byteLength(p.payload) : p.payload.length
const retainedBytes = (p: Pkt): number => Buffer.byteLength(p.topic) + payloadBytes(p)
const queuedBytes = (p: Pkt): number => payloadBytes(p) + QUEUED_MESSAGE_OVERHEAD_BYTES

/** A retained message with its topic split into levels once (a replay matches every one of them). */
type Retained = { packet: Pkt, levels: string[], bytes: number }

/** MQTT 3.1.1 section 4.7 topic filter matching against a topic split into levels. */
function compileFilter (filter: string): (topic: string, t: string[]) => boolean {
  const f = filter.split('/')
  const dollarSafe = f[0] === '#' || f[0] === '+' // [MQTT-4.7.2-1] wildcards at the start do not match $-topics
  return (topic, t) => {
    if (dollarSafe && topic.charCodeAt(0) === 36) return false
    for (let i = 0; i < f.length; i++) {
      const fi = f[i]!
      if (fi === '#') return true // [MQTT-4.7.1-2] also matches the parent level
      if (i >= t.length) return false
      if (fi !== '+' && fi !== t[i]) return false
    }
    return f.length === t.length
  }
}

/** `owner`: the principal key (acl.ts `principalKey`) of the client that holds the session. */
type Session = { online: boolean, since: number, owner: string | undefined }

export class BoundedPersistence {
  private readonly inner = new InnerMemory()
  /** clientId -> messageId -> an inbound QoS 2 PUBLISH awaiting its PUBREL */
  private readonly incoming = new Map<string, Map<number, Pkt>>()
  private readonly retained = new Map<string, Retained>()
  private retainedTotalBytes = 0
  private readonly outgoing = new Map<string, Pkt[]>()
  private queuedCount = 0
  private queuedBytes = 0
  /** Persistent sessions in the order they last went offline (online ones anywhere). */
  private readonly sessions = new Map<string, Session>()
  private readonly watchers: SessionWatcher[] = []
  /** The client whose SUBSCRIBE is being answered: set by the broker just before Aedes asks for its retained stream. */
  replayClient: ClientRef | null = null

  constructor (private readonly limits: BrokerLimits, private readonly on: PersistenceEvents) {}

  get retainedCount (): number { return this.retained.size }
  get retainedSize (): number { return this.retainedTotalBytes }
  get queuedMessages (): number { return this.queuedCount }
  get queuedSize (): number { return this.queuedBytes }
  get sessionCount (): number { return this.sessions.size }

  /** `w` hears of every persistent session's subscriptions from now on, and of every session's end. */
  watch (w: SessionWatcher): void { this.watchers.push(w) }

  async setup (broker: unknown): Promise<void> {
    await this.inner.setup(broker)
  }

  // ---- retained messages

  /** Why a retained message of this topic and size would not be kept, or null if it fits. */
  retainedRefusal (topic: string, bytes: number): PersistenceLimit | null {
    const old = this.retained.get(topic)
    if (!old && this.retained.size >= this.limits.maxRetainedMessages) return 'retained_messages'
    if (this.retainedTotalBytes - (old?.bytes ?? 0) + bytes > this.limits.maxRetainedBytes) return 'retained_bytes'
    return null
  }

  async storeRetained (pkt: Pkt): Promise<void> {
    const packet: Pkt = Object.assign({}, pkt)
    const old = this.retained.get(packet.topic)
    if (payloadBytes(packet) === 0) { // [MQTT-3.3.1-10] an empty retained message clears the topic
      if (old) { this.retained.delete(packet.topic); this.retainedTotalBytes -= old.bytes }
      return
    }
    const bytes = retainedBytes(packet)
    const refusal = this.retainedRefusal(packet.topic, bytes)
    if (refusal) { this.on.limit(refusal, typeof pkt.clientId === 'string' ? pkt.clientId : ''); return }
    if (old) this.retainedTotalBytes -= old.bytes
    this.retained.set(packet.topic, { packet, levels: packet.topic.split('/'), bytes })
    this.retainedTotalBytes += bytes
  }

  createRetainedStreamCombi (patterns: string[]): Readable {
    const client = this.replayClient
    this.replayClient = null
    return Readable.from(this.retainedMatching(patterns, client))
  }

  createRetainedStream (pattern: string): Readable {
    return Readable.from(this.retainedMatching([pattern], null))
  }

  private * retainedMatching (patterns: string[], client: ClientRef | null): Generator<Pkt> {
    for (const p of patterns) {
      if (client?.closed) return // nobody is left to replay to, and writes to a closed socket leak
      if (!p.includes('+') && !p.includes('#')) { // no wildcard: one lookup
        const r = this.retained.get(p)
        if (r) yield r.packet
        continue
      }
      const match = compileFilter(p)
      for (const [topic, r] of this.retained) {
        if (client?.closed) return
        if (match(topic, r.levels)) yield r.packet
      }
    }
  }

  // ---- sessions

  /** A client finished CONNECT (the broker calls this from Aedes' `client` event). */
  clientConnected (client: { id: string, clean: boolean }): void {
    if (client.clean) return
    const owner = this.sessions.get(client.id)?.owner
    this.sessions.delete(client.id)
    this.sessions.set(client.id, { online: true, since: Date.now(), owner })
    this.evictOverflow()
  }

  /** A client's connection ended (Aedes' `clientDisconnect`). */
  clientDisconnected (client: { id: string, clean: boolean }): void {
    const s = this.sessions.get(client.id)
    if (client.clean || !s) return
    this.sessions.delete(client.id)
    this.sessions.set(client.id, { online: false, since: Date.now(), owner: s.owner })
  }

  /** The principal key that owns `id`'s persistent session, if one is kept. */
  sessionOwner (id: string): string | undefined { return this.sessions.get(id)?.owner }

  /** `owner` holds `id`'s persistent session now (the broker calls it when the client is registered). */
  setSessionOwner (id: string, owner: string): void {
    const s = this.sessions.get(id)
    if (s) s.owner = owner
  }

  /**
   * `owner` (a principal key) authenticated a CONNECT with client id `id`, before Aedes
   * restores any session: a session of `id` that another principal owns (or whose owner is
   * unknown) is removed with its subscriptions, queue and QoS state, so the newcomer starts
   * clean; with `clean` false, `owner` owns the session this connection keeps. Returns the
   * previous owner when a session was removed, else null.
   */
  async claimSession (id: string, owner: string, clean: boolean): Promise<string | null> {
    const s = this.sessions.get(id)
    let previous: string | null = null
    if (s && s.owner !== owner) {
      previous = s.owner ?? 'unknown'
      await this.dropSession(id)
    }
    if (clean) return previous
    const cur = this.sessions.get(id)
    if (cur) cur.owner = owner
    else { // claimed now, so a rival CONNECT in the same moment already finds an owner
      this.sessions.set(id, { online: false, since: Date.now(), owner })
      this.evictOverflow()
    }
    return previous
  }

  private evictOverflow (): void {
    if (this.sessions.size <= this.limits.maxSessions) return
    for (const [id, s] of this.sessions) {
      if (this.sessions.size <= this.limits.maxSessions) break
      if (s.online) continue
      this.on.limit('sessions', id)
      void this.dropSession(id)
    }
  }

  /** Removes every offline session older than the expiry; returns how many. */
  expire (now = Date.now()): number {
    const cutoff = now - this.limits.sessionExpirySec * 1000
    let n = 0
    for (const [id, s] of this.sessions) {
      if (s.online || s.since > cutoff) continue
      void this.dropSession(id)
      this.on.expired(id)
      n++
    }
    return n
  }

  /** Removes a session on this class's own decision; its inbound QoS 2 state goes with it. */
  private dropSession (id: string): Promise<void> {
    this.incoming.delete(id)
    return this.endSession(id).catch(() => {})
  }

  /**
   * The one way a session ends, for Aedes and for this class alike: the session's record, its
   * queue and its subscriptions go, and every watcher hears it.
   */
  private endSession (id: string): Promise<void> {
    this.sessions.delete(id)
    this.dropQueue(id)
    for (const w of this.watchers) w.ended(id)
    return this.inner.cleanSubscriptions({ id })
  }

  private dropQueue (id: string): void {
    const q = this.outgoing.get(id)
    if (!q) return
    for (const p of q) { this.queuedCount--; this.queuedBytes -= queuedBytes(p) }
    this.outgoing.delete(id)
  }

  // ---- subscriptions (stored by the stock trie)

  /** Aedes calls this for a CleanSession=0 client's SUBSCRIBE (a clean one's live only on the emitter). */
  addSubscriptions (client: ClientRef, subs: unknown[]): Promise<void> {
    if (this.watchers.length > 0) {
      const filters = subs.map((s) => (s as { topic: string }).topic)
      for (const w of this.watchers) w.added(client.id, filters)
    }
    return this.inner.addSubscriptions(client, subs)
  }

  removeSubscriptions (client: ClientRef, subs: string[]): Promise<void> {
    for (const w of this.watchers) w.removed(client.id, subs)
    return this.inner.removeSubscriptions(client, subs)
  }

  subscriptionsByClient (client: ClientRef): Promise<unknown[]> { return this.inner.subscriptionsByClient(client) }
  countOffline (): Promise<{ subsCount: number, clientsCount: number }> { return this.inner.countOffline() }
  subscriptionsByTopic (topic: string): Promise<Sub[]> { return this.inner.subscriptionsByTopic(topic) }

  /** Aedes calls this on a CleanSession=1 CONNECT: the old session ends, queue included [MQTT-3.1.2-6]. */
  cleanSubscriptions (client: ClientRef): Promise<void> {
    return this.endSession(client.id)
  }

  // ---- outgoing queues

  async outgoingEnqueue (sub: Sub, packet: Pkt): Promise<void> { this.enqueue(sub.clientId, packet) }

  async outgoingEnqueueCombi (subs: Sub[], packet: Pkt): Promise<void> {
    for (const s of subs) this.enqueue(s.clientId, packet)
  }

  private enqueue (id: string, packet: Pkt): void {
    let q = this.outgoing.get(id)
    if (q && q.length >= this.limits.maxQueuedMessages) { this.on.limit('queued_messages', id); return }
    const bytes = queuedBytes(packet)
    if (this.queuedBytes + bytes > this.limits.maxQueuedBytesTotal) { this.on.limit('queued_bytes_total', id); return }
    if (this.limits.maxQueuedMessages === 0) { this.on.limit('queued_messages', id); return }
    if (!q) { q = []; this.outgoing.set(id, q) }
    q.push(new AedesPacket(packet))
    this.queuedCount++
    this.queuedBytes += bytes
  }

  /** As aedes-persistence, except that a packet not in the queue (dropped at a bound) is not an error. */
  async outgoingUpdate (client: ClientRef, packet: Pkt): Promise<void> {
    const q = this.outgoing.get(client.id)
    if (!q) return
    for (let i = 0; i < q.length; i++) {
      const temp = q[i]!
      if (temp.brokerId === packet.brokerId) {
        if (temp.brokerCounter === packet.brokerCounter) { temp.messageId = packet.messageId; return }
        // the 16-bit message id rotates: a different counter with the same id is another message
      } else if (temp.messageId === packet.messageId) {
        this.queuedBytes += queuedBytes(packet) - queuedBytes(temp)
        q[i] = packet
        return
      }
    }
  }

  async outgoingClearMessageId (client: ClientRef, packet: Pkt): Promise<Pkt | undefined> {
    const q = this.outgoing.get(client.id)
    if (!q) return undefined
    for (let i = 0; i < q.length; i++) {
      const temp = q[i]!
      if (temp.messageId === packet.messageId) {
        q.splice(i, 1)
        this.queuedCount--
        this.queuedBytes -= queuedBytes(temp)
        if (q.length === 0) this.outgoing.delete(client.id)
        return temp
      }
    }
    return undefined
  }

  outgoingStream (client: ClientRef): Readable {
    return Readable.from([...(this.outgoing.get(client.id) ?? [])])
  }

  // ---- inbound QoS 2 (here) and wills (stock)
  // Aedes asks for every new QoS 2 PUBLISH whether its id is already stored, and the stock
  // store answers "no" by building an Error with a stack trace: under a QoS 2 flood that was
  // 8% of the broker's CPU (bench/fuzz.ts profile). "Not stored" is an expected answer, so
  // it is one shared, stackless rejection here.

  incomingStorePacket (client: ClientRef, packet: Pkt): Promise<void> {
    let m = this.incoming.get(client.id)
    if (!m) { m = new Map(); this.incoming.set(client.id, m) }
    const p = new AedesPacket(packet)
    p.messageId = packet.messageId
    m.set(packet.messageId!, p)
    return DONE
  }

  incomingGetPacket (client: ClientRef, packet: Pkt): Promise<Pkt> {
    const p = this.incoming.get(client.id)?.get(packet.messageId!)
    return p ? Promise.resolve(p) : Promise.reject(NO_SUCH_PACKET)
  }

  incomingDelPacket (client: ClientRef, packet: Pkt): Promise<void> {
    const m = this.incoming.get(client.id)
    if (!m?.delete(packet.messageId!)) return Promise.reject(NO_SUCH_PACKET)
    if (m.size === 0) this.incoming.delete(client.id)
    return DONE
  }

  cleanIncoming (client: ClientRef): Promise<void> { this.incoming.delete(client.id); return DONE }
  putWill (client: ClientRef, packet: Pkt): Promise<void> { return this.inner.putWill(client, packet) }
  getWill (client: ClientRef): Promise<Pkt | undefined> { return this.inner.getWill(client) }
  delWill (client: ClientRef): Promise<Pkt | undefined> { return this.inner.delWill(client) }
  streamWill (brokers?: unknown): Readable { return this.inner.streamWill(brokers) }
  getClientList (topic: string): Readable { return this.inner.getClientList(topic) }

  async destroy (): Promise<void> {
    this.retained.clear()
    this.outgoing.clear()
    this.sessions.clear()
    this.incoming.clear()
    this.queuedCount = 0
    this.queuedBytes = 0
    this.retainedTotalBytes = 0
    await this.inner.destroy()
  }
}
