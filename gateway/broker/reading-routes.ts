/**
 * Routing shortcut for readings. Aedes 1.x hands every accepted PUBLISH to
 * `broker.publish` after the PUBACK: a packet copy, the offline-session lookup (a topic split
 * and a trie match in the persistence), the emitter's trie match, then the `published` hook.
 * For a reading the intake has taken that is all work for nobody unless some subscription
 * could match `devices/{id}/readings`; it was ~20% of the bytes allocated per reading.
 *
 * Invariant: a reading skips routing only when no filter that could match any readings topic
 * is registered, counted where subscriptions enter and leave Aedes:
 * - online subscriptions: every one goes through the emitter's `on` / `removeListener`
 *   (clients, restored persistent sessions, Aedes' own `$SYS` listeners), counted per
 *   (filter, listener) so a removal of something never added cannot drive the count down;
 * - persistent sessions (`clean=false`, queued while offline): per client id, as the
 *   persistence reports them (persistence.ts `SessionWatcher`): filters added and removed,
 *   and the end of a session, whoever ended it (a CleanSession=1 CONNECT, expiry, eviction
 *   past `maxSessions`, a takeover). Every end comes through that one report, so a session
 *   that is gone leaves no filter counted and no entry in `sessions`: under churn the map
 *   stays as small as the persistence's own and the shortcut comes back once the last
 *   session that could match is gone.
 * Retained readings, and any reading while a `publish` event listener or a `published` hook
 * exists, are routed as before. The emitter, `publish` and the hook are Aedes internals,
 * reached through aedes-internals.ts.
 */
import type { Aedes, PublishPacket } from 'aedes'
import { AedesShapeError, brokerInternals, type Listener } from './aedes-internals.ts'
import type { SessionWatcher } from './persistence.ts'

const TAKEN = Symbol('readingTaken')
type Marked = PublishPacket & { [TAKEN]?: boolean }
/** Where the persistent sessions' subscriptions are reported (persistence.ts BoundedPersistence). */
type Sessions = { watch (w: SessionWatcher): void }

/**
 * Whether an MQTT topic filter can match some `devices/{id}/readings` topic. Errs towards
 * true (a `$share/...` filter, a literal device id that no device has).
 */
export function couldMatchReadings (filter: string): boolean {
  if (filter.startsWith('$share/')) return true
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!
    if (l === '#') return true // [MQTT-4.7.1-2] also matches the parent level
    if (i >= 3) return false
    if (l === '+') continue
    if (i === 0 && l !== 'devices') return false
    if (i === 2 && l !== 'readings') return false
  }
  return levels.length === 3
}

export class ReadingRoutes {
  /** (filter, listener) pairs on the emitter that could match a readings topic */
  private online = 0
  private readonly listeners = new Map<string, Map<Listener, number>>()
  /** persistent sessions' filters that could match a readings topic, by client id */
  private readonly sessions = new Map<string, Set<string>>()
  private persistent = 0

  /** Persistent sessions holding a filter that could match a readings topic (bounded by the persistence's `maxSessions`). */
  get sessionCount (): number { return this.sessions.size }

  /**
   * Counts subscriptions from now on (online ones on Aedes' emitter, persistent ones as
   * `sessions` reports them) and lets marked readings skip routing while none could match.
   */
  install (aedes: Aedes, sessions: Sessions): void {
    const internals = brokerInternals(aedes)
    // the count of persistent sessions is only right if they are the ones Aedes keeps
    if (internals.persistence !== sessions) throw new AedesShapeError('aedes.persistence set to the bounded persistence')
    this.countSessions(sessions)
    const mq = internals.mq
    const on = mq.on.bind(mq)
    const off = mq.removeListener.bind(mq)
    mq.on = (topic, notify, done) => { this.added(topic, notify); return on(topic, notify, done) }
    mq.removeListener = (topic, notify, done) => { this.removed(topic, notify); return off(topic, notify, done) }
    const publish = internals.publish
    const hooked = internals.publishedHook
    internals.replacePublish((packet, client, done) => {
      if ((packet as Marked)[TAKEN] === true && !hooked && this.idle() && !packet.retain && aedes.listenerCount('publish') === 0) {
        done?.()
        return
      }
      publish(packet, client, done)
    })
  }

  /** Counts the persistent sessions' filters as `sessions` reports them. */
  private countSessions (sessions: Sessions): void {
    sessions.watch({
      added: (id, filters) => { for (const f of filters) this.sessionAdded(id, f) },
      removed: (id, filters) => { for (const f of filters) this.sessionRemoved(id, f) },
      ended: (id) => this.sessionCleaned(id)
    })
  }

  /** The intake took this reading: it needs routing only if a subscription could match it. */
  static mark (packet: PublishPacket): void {
    (packet as Marked)[TAKEN] = true
  }

  /** No subscription could match a readings topic. */
  idle (): boolean {
    return this.online === 0 && this.persistent === 0
  }

  private added (filter: string, notify: Listener): void {
    if (!couldMatchReadings(filter)) return
    let m = this.listeners.get(filter)
    if (!m) { m = new Map(); this.listeners.set(filter, m) }
    m.set(notify, (m.get(notify) ?? 0) + 1)
    this.online++
  }

  private removed (filter: string, notify: Listener): void {
    const m = this.listeners.get(filter)
    const n = m?.get(notify)
    if (!m || n === undefined) return
    if (n > 1) m.set(notify, n - 1); else m.delete(notify)
    if (m.size === 0) this.listeners.delete(filter)
    this.online--
  }

  private sessionAdded (clientId: string, filter: string): void {
    if (!couldMatchReadings(filter)) return
    let s = this.sessions.get(clientId)
    if (!s) { s = new Set(); this.sessions.set(clientId, s) }
    if (!s.has(filter)) { s.add(filter); this.persistent++ }
  }

  private sessionRemoved (clientId: string, filter: string): void {
    const s = this.sessions.get(clientId)
    if (s?.delete(filter)) this.persistent--
    if (s?.size === 0) this.sessions.delete(clientId)
  }

  private sessionCleaned (clientId: string): void {
    const s = this.sessions.get(clientId)
    if (!s) return
    this.persistent -= s.size
    this.sessions.delete(clientId)
  }
}
