/**
 * The bound on dedup windows on disk, `maxDedupDevices`: without it every
 * client id that ever sent a reading with a seq (millions under `--auth none`, or through an
 * `anyDevice` mapping) keeps a `d!{deviceId}` key forever (until `dedupIdleForgetMs`), outside
 * every quota. Boots need no bound of their own: a window keeps at most the two newest boots
 * of its device (dedup.ts), so a device changing `boot` on every reading still has one key.
 *
 * Invariants
 * - `known` holds the device id of every `d!` key on disk, least recently written first (a
 *   Set keeps insertion order; a window written by a cycle moves to the young end once that
 *   cycle is durable). It is the count, too: nothing on disk, memory only.
 * - A cycle whose new windows would take the count past `max` deletes, in the same batch,
 *   the least recently written windows it does not write itself: the number of `d!` keys
 *   never exceeds `max`. When one cycle carries more new devices than the bound leaves room
 *   for, the windows past it are not written at all (their devices stay protected while the
 *   intake's cache holds the window in memory).
 * - Evicting a window costs its device exactly-once protection for retransmits of readings
 *   older than the eviction (they are stored again: at least once); valid readings are never
 *   refused for it. Counted (`gateway_dedup_evicted_total`) and logged, at most once a minute.
 *
 * Cost: per cycle, a Set lookup per device it writes and a move to the young end once the
 * cycle is durable; an eviction is one delete in the batch. Memory: one Set entry per window
 * on disk (~100 bytes for a 20-character id). Startup: one scan of the `d!` range, each value
 * decoded for its time of last reading (docs/store.md gives the measured cost); more windows
 * than `max` on disk (a lower bound than last run, a store from before the bound) are
 * evicted then, oldest first.
 *
 * Crash: evictions are part of the cycle's batch, atomic with the windows they make room
 * for; the startup scan recounts whatever is on disk.
 */
import type { Logger } from 'pino'
import type { Db } from './db.ts'
import { DedupWindow } from './dedup.ts'
import { K } from './keys.ts'

/** What one cycle does for the bound: device windows to delete, windows not to write. */
export type BoundPlan = { deletes: string[], unwritten: Set<string> | null, evicted: number }

const NONE: BoundPlan = { deletes: [], unwritten: null, evicted: 0 }
const LOG_EVERY_MS = 60_000
const DELETE_CHUNK = 1000

export class DedupBound {
  private evictedSinceLog = 0
  private lastLogMs = -Infinity

  /** `evictedAtOpen`: windows deleted at startup to come under the bound. */
  private constructor (private readonly known: Set<string>, readonly max: number, readonly evictedAtOpen: number, private readonly log: Logger) {}

  /** Windows on disk now. */
  get size (): number { return this.known.size }

  /** Recounts the windows on disk, oldest reading first; evicts the oldest past `max`. */
  static async open (db: Db, max: number, log: Logger): Promise<DedupBound> {
    const t0 = performance.now()
    const found: Array<{ device: string, seenAtS: number }> = []
    for await (const [k, v] of db.iterator(K.all('dedup'))) found.push({ device: K.deviceOfDedup(k), seenAtS: DedupWindow.seenAtOf(v) })
    // Array.prototype.sort is stable: equal times keep key order
    found.sort((a, b) => a.seenAtS - b.seenAtS)
    const excess = Math.max(0, found.length - max)
    for (let i = 0; i < excess; i += DELETE_CHUNK) {
      const b = db.batch()
      for (const f of found.slice(i, Math.min(excess, i + DELETE_CHUNK))) b.del(K.dedup(f.device))
      await b.write()
    }
    const known = new Set<string>()
    for (let i = excess; i < found.length; i++) known.add(found[i]!.device)
    const ms = Math.round(performance.now() - t0)
    if (excess) log.warn({ evicted: excess, windows: known.size, maxDedupDevices: max, ms }, 'more dedup windows on disk than maxDedupDevices: the least recently used were evicted')
    else log.debug({ windows: known.size, ms }, 'dedup windows counted')
    return new DedupBound(known, max, excess, log)
  }

  /**
   * The evictions cycle `devices` needs, given the windows `removed` (device ids) the same
   * batch deletes anyway (idle sweep, quarantine). Pure: memory changes in `committed`.
   */
  plan (devices: ReadonlyMap<string, unknown>, removed: readonly string[]): BoundPlan {
    const gone = removed.length ? new Set(removed) : null
    let excess = this.known.size - this.max
    if (gone) for (const d of gone) if (this.known.has(d)) excess--
    for (const d of devices.keys()) if (!this.known.has(d) || gone?.has(d)) excess++
    if (excess <= 0) return NONE
    const deletes: string[] = []
    let evicted = 0
    for (const d of this.known) {
      if (excess === 0) break
      if (devices.has(d) || gone?.has(d)) continue
      deletes.push(d)
      evicted++
      excess--
    }
    let unwritten: Set<string> | null = null
    if (excess > 0) {
      // more new windows in this one cycle than the bound has room for
      unwritten = new Set()
      for (const d of devices.keys()) {
        if (excess === 0) break
        unwritten.add(d)
        if (this.known.has(d) && !gone?.has(d)) deletes.push(d) // its older copy goes too
        evicted++
        excess--
      }
    }
    return { deletes, unwritten, evicted }
  }

  /** The cycle that carried `plan` is durable. */
  committed (devices: ReadonlyMap<string, unknown>, removed: readonly string[], plan: BoundPlan): void {
    for (const d of removed) this.known.delete(d)
    for (const d of plan.deletes) this.known.delete(d)
    for (const d of devices.keys()) {
      if (plan.unwritten?.has(d)) continue
      this.known.delete(d)
      this.known.add(d)
    }
    if (plan.evicted === 0) return
    this.evictedSinceLog += plan.evicted
    const now = performance.now()
    if (now - this.lastLogMs < LOG_EVERY_MS) return
    this.log.warn({ evicted: this.evictedSinceLog, windows: this.known.size, maxDedupDevices: this.max }, 'dedup windows on disk at maxDedupDevices: the least recently used evicted (their devices\' retransmits older than this are stored again; at most one line a minute)')
    this.lastLogMs = now
    this.evictedSinceLog = 0
  }
}
