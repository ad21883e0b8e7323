/**
 * The per-device dedup windows (the window itself: dedup.ts), in memory and on disk, with
 * one owner. The intake asks it for a device's window (`get`, else `load`), checks a seq
 * against it and reports a change (`changed`); everything else happens here or in the
 * write cycle it hands its changes to.
 *
 * Memory: at most `dedupCacheDevices` windows, least recently used evicted first (a hit
 * moves the device to the young end, at most once a second; a Map keeps insertion order).
 * A window that a cycle not yet durable carries, or that changed since the current cycle
 * began gathering (`pending > 0`), is never evicted: its state is not on disk yet, and
 * reloading it would forget seqs. A window idle past `dedupIdleForgetMs` counts as absent.
 * After a failed write every unpinned window is forgotten (disk has the truth).
 *
 * Disk (`d!{deviceId}`, layout in dedup.ts): a window changed by a reading is written in
 * the same cycle as the reading's item, so after a crash the window and the items agree.
 * The windows changed since the last cycle was formed are handed to the next one when it
 * is formed (`handTo`, through `Cycle.seal`, the writer's first statement: cycle.ts). An
 * unreadable window is quarantined in that cycle and the device starts a new one.
 *
 * Idle sweep: the windows of devices idle longer than `dedupIdleForgetMs` are deleted on
 * disk (the intake treats them as absent already: this only reclaims the space). It runs
 * inside a write cycle, so no other write lands between its scan and its deletes: a window
 * saved since was written by an earlier cycle with a fresh `seenAtS`, or is in this cycle
 * (skipped). Bounded: at most SWEEP_CHUNK keys a cycle, the scan resumes where it stopped.
 *
 * The bound on windows on disk, `maxDedupDevices`: without it every client id that ever
 * sent a reading with a seq (millions under `--auth none`, or through an `anyDevice`
 * mapping) keeps a `d!` key forever (until `dedupIdleForgetMs`), outside every quota.
 * Boots need no bound of their own: a window keeps at most the two newest boots of its
 * device (dedup.ts), so a device changing `boot` on every reading still has one key.
 * - `known` holds the device id of every `d!` key on disk, least recently written first (a
 *   Set keeps insertion order; a window written by a cycle moves to the young end once that
 *   cycle is durable). It is the count, too: nothing on disk, memory only.
 * - A cycle whose new windows would take the count past `max` deletes, in the same batch,
 *   the least recently written windows it does not write itself: the number of `d!` keys
 *   never exceeds `max`. When one cycle carries more new devices than the bound leaves room
 *   for, the windows past it are not written at all (their devices stay protected while the
 *   memory cache holds the window).
 * - Evicting a window costs its device exactly-once protection for retransmits of readings
 *   older than the eviction (they are stored again: at least once); valid readings are never
 *   refused for it. Counted (`gateway_dedup_evicted_total`) and logged, at most once a minute.
 * Cost: per cycle, a Set lookup per device it writes and a move to the young end once the
 * cycle is durable; an eviction is one delete in the batch. Memory: one Set entry per window
 * on disk (~100 bytes for a 20-character id). Startup: one scan of the `d!` range, each value
 * decoded for its time of last reading (docs/store.md gives the measured cost); more windows
 * than `max` on disk (a lower bound than last run, a store from before the bound) are
 * evicted then, oldest first.
 *
 * Crash: sweep deletes and evictions are part of the cycle's batch, atomic with the windows
 * they make room for; the startup scan recounts whatever is on disk.
 */
import type { Logger } from 'pino'
import type { StoreConfig } from './config.ts'
import type { Cycle } from './cycle.ts'
import type { Db } from './db.ts'
import type { Quarantined } from './dead-letters.ts'
import { DedupWindow } from './dedup.ts'
import { K } from './keys.ts'

/**
 * What one cycle does to the windows on disk besides writing its own: `deletes` (keys; idle
 * and evicted windows), `unwritten` (its windows past the bound), `removed` (device ids the
 * batch deletes anyway: idle, quarantined). Planned in the write, applied once durable.
 */
export type DiskPlan = { deletes: string[], unwritten: Set<string> | null, removed: string[], forgotten: number, evicted: number }

const SWEEP_CHUNK = 1000
/** How often a sweep starts (at most; shorter for short idle times). */
const MAX_SWEEP_INTERVAL_MS = 3600_000
const LOG_EVERY_MS = 60_000
const DELETE_CHUNK = 1000

type Config = Pick<StoreConfig, 'dedupCacheDevices' | 'dedupIdleForgetMs' | 'maxDedupDevices'>

export class DedupWindows {
  // memory
  private readonly cache = new Map<string, DedupWindow>()
  private readonly loading = new Map<string, Promise<DedupWindow>>()
  /** changed since the current cycle began gathering (pinned); handed to it when it is formed */
  private changes = new Map<string, DedupWindow>()
  private quarantine: Quarantined[] = []
  private readonly idleS: number
  // sweep
  /** a sweep is under way or due: the writer runs a chunk with its next cycle */
  private sweepWanted = false
  private sweepAfter: string | undefined
  private timer: NodeJS.Timeout | null = null
  private forgottenInSweep = 0
  // bound
  private evictedSinceLog = 0
  private lastLogMs = -Infinity

  /** `evictedAtOpen`: windows deleted at startup to come under `maxDedupDevices`. */
  private constructor (private readonly db: Db, private readonly config: Config, private readonly known: Set<string>, readonly evictedAtOpen: number, private readonly log: Logger, private readonly schedule: () => void) {
    this.idleS = Math.floor(config.dedupIdleForgetMs / 1000)
    const every = Math.max(1000, Math.min(MAX_SWEEP_INTERVAL_MS, Math.floor(config.dedupIdleForgetMs / 2)))
    this.timer = setInterval(() => { this.sweepWanted = true; schedule() }, every)
    this.timer.unref()
  }

  /**
   * Recounts the windows on disk, oldest reading first, and evicts the oldest past
   * `maxDedupDevices`. `schedule` asks the store for a write cycle.
   */
  static async open (db: Db, config: Config, log: Logger, schedule: () => void): Promise<DedupWindows> {
    const max = config.maxDedupDevices
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
    return new DedupWindows(db, config, known, excess, log, schedule)
  }

  /** Windows on disk now (at most `maxDedupDevices`). */
  get size (): number { return this.known.size }

  /** Windows in memory now (at most `dedupCacheDevices`, past it only pinned ones). */
  get cached (): number { return this.cache.size }

  // ---- the intake's side ----------------------------------------------------------

  /**
   * The device's window in memory, refreshed as most recently used; undefined when not
   * cached, or when the device was idle past `dedupIdleForgetMs` at `nowS` (the window is
   * then forgotten). `nowS` 0: no idle check, always refreshed.
   */
  get (device: string, nowS = 0): DedupWindow | undefined {
    const w = this.cache.get(device)
    if (w !== undefined) {
      if (w.pending === 0 && nowS !== 0 && w.idleSince(nowS, this.idleS)) { this.cache.delete(device); return undefined }
      // moved to the young end at most once per second (nowS = 0: always): a Map delete and
      // set on every reading was ~1.5% of the intake's CPU, and LRU order to the second is
      // all eviction needs
      if (nowS === 0 || w.cacheTouchedS !== nowS) {
        this.cache.delete(device)
        this.cache.set(device, w)
        w.cacheTouchedS = nowS
      }
    }
    return w
  }

  /**
   * The device's window from disk (a new one if there is none, or it is idle at `nowS`),
   * then kept in memory. Concurrent loads of one device share one read, and their
   * continuations run in registration order: per-device arrival order is kept.
   */
  load (device: string, nowS: number): Promise<DedupWindow> {
    let p = this.loading.get(device)
    if (!p) {
      p = this.read(device).then((loaded) => {
        this.loading.delete(device)
        // a device idle past dedupIdleForgetMs starts a new window (docs/store.md)
        const fresh = loaded && !loaded.idleSince(nowS, this.idleS) ? loaded : null
        const win = this.get(device) ?? fresh ?? new DedupWindow()
        this.remember(device, win)
        return win
      }, (err: unknown) => { this.loading.delete(device); throw err })
      this.loading.set(device, p)
    }
    return p
  }

  /** The window on disk as it is, or null; an unreadable one is quarantined by the next cycle. */
  async read (device: string): Promise<DedupWindow | null> {
    const buf = await this.db.get(K.dedup(device))
    if (buf === undefined) return null
    try {
      return DedupWindow.decode(buf)
    } catch (err) {
      this.log.warn({ device, err }, 'dedup window unreadable; quarantined, starting a new window')
      this.quarantine.push({ key: K.dedup(device), raw: buf, reason: (err as Error).message })
      this.schedule()
      return null
    }
  }

  /** A window a reading changed: the next cycle writes it (once per cycle; pinned in memory until then). */
  changed (device: string, w: DedupWindow): void {
    if (!this.changes.has(device)) {
      this.changes.set(device, w)
      w.pending++
    }
    this.schedule()
  }

  /** Starts a sweep of idle windows on disk now (it also runs on a timer). */
  sweep (): void {
    this.sweepWanted = true
    this.schedule()
  }

  /** Adds (or refreshes) a window in memory; past the bound, evicts the least recently used down to 90%. */
  private remember (device: string, w: DedupWindow): void {
    this.cache.delete(device)
    this.cache.set(device, w)
    const max = this.config.dedupCacheDevices
    if (this.cache.size <= max) return
    for (const [dev, win] of this.cache) {
      if (this.cache.size <= max * 0.9) break
      if (win.pending === 0) this.cache.delete(dev)
    }
  }

  // ---- the writer's side ----------------------------------------------------------

  /** The next cycle has something to do here (changed windows, quarantine, a sweep). */
  get wanted (): boolean {
    return this.changes.size > 0 || this.quarantine.length > 0 || this.sweepWanted
  }

  /**
   * Hands the changes since the last cycle to cycle `c` as it is formed, which seals them:
   * the writer's first statement (cycle.ts).
   */
  handTo (c: Cycle): Array<[device: string, bytes: Buffer]> {
    const sealed = c.seal(this.changes, this.quarantine)
    this.changes = new Map()
    this.quarantine = []
    return sealed
  }

  /** A sweep of idle windows is under way or due: `sweepChunk` runs with the next cycle. */
  get sweepDue (): boolean { return this.sweepWanted }

  /** Keys of idle windows to delete in cycle `c` (one chunk of the scan). */
  async sweepChunk (c: Cycle): Promise<string[]> {
    const nowS = Math.floor(Date.now() / 1000)
    const range = this.sweepAfter === undefined ? K.all('dedup') : { gt: this.sweepAfter, lt: K.all('dedup').lt }
    const chunk = await this.db.iterator({ ...range, limit: SWEEP_CHUNK }).all()
    const out: string[] = []
    for (const [k, v] of chunk) {
      if (c.devices.has(K.deviceOfDedup(k))) continue
      let w: DedupWindow
      try { w = DedupWindow.decode(v) } catch { continue } // unreadable: quarantined when loaded
      if (w.idleSince(nowS, this.idleS)) out.push(k)
    }
    this.forgottenInSweep += out.length
    if (chunk.length < SWEEP_CHUNK) {
      if (this.forgottenInSweep) this.log.info({ devices: this.forgottenInSweep, idleMs: this.config.dedupIdleForgetMs }, 'dedup state of idle devices forgotten')
      this.sweepAfter = undefined
      this.sweepWanted = false
      this.forgottenInSweep = 0
    } else {
      this.sweepAfter = chunk[chunk.length - 1]![0]
    }
    return out
  }

  /**
   * The deletes cycle `c` (already sealed) makes on disk besides its own windows: the idle
   * windows `forgotten` (keys, from `sweepChunk`) and the evictions `maxDedupDevices` needs
   * for its new windows. Pure: memory changes in `committed`.
   */
  plan (c: Cycle, forgotten: string[]): DiskPlan {
    const removed = forgotten.map(K.deviceOfDedup)
    for (const q of c.quarantine) if (K.isDedup(q.key)) removed.push(K.deviceOfDedup(q.key))
    const devices = c.devices
    const gone = removed.length ? new Set(removed) : null
    const deletes = forgotten.slice()
    let excess = this.known.size - this.config.maxDedupDevices
    if (gone) for (const d of gone) if (this.known.has(d)) excess--
    for (const d of devices.keys()) if (!this.known.has(d) || gone?.has(d)) excess++
    let evicted = 0
    let unwritten: Set<string> | null = null
    if (excess > 0) {
      for (const d of this.known) {
        if (excess === 0) break
        if (devices.has(d) || gone?.has(d)) continue
        deletes.push(K.dedup(d))
        evicted++
        excess--
      }
      if (excess > 0) {
        // more new windows in this one cycle than the bound has room for
        unwritten = new Set()
        for (const d of devices.keys()) {
          if (excess === 0) break
          unwritten.add(d)
          if (this.known.has(d) && !gone?.has(d)) deletes.push(K.dedup(d)) // its older copy goes too
          evicted++
          excess--
        }
      }
    }
    return { deletes, unwritten, removed, forgotten: forgotten.length, evicted }
  }

  /** The cycle that carried `plan` is durable. */
  committed (c: Cycle, plan: DiskPlan): void {
    for (const d of plan.removed) this.known.delete(d)
    for (const k of plan.deletes) this.known.delete(K.deviceOfDedup(k))
    for (const d of c.devices.keys()) {
      if (plan.unwritten?.has(d)) continue
      this.known.delete(d)
      this.known.add(d)
    }
    if (plan.evicted === 0) return
    this.evictedSinceLog += plan.evicted
    const now = performance.now()
    if (now - this.lastLogMs < LOG_EVERY_MS) return
    this.log.warn({ evicted: this.evictedSinceLog, windows: this.known.size, maxDedupDevices: this.config.maxDedupDevices }, 'dedup windows on disk at maxDedupDevices: the least recently used evicted (their devices\' retransmits older than this are stored again; at most one line a minute)')
    this.lastLogMs = now
    this.evictedSinceLog = 0
  }

  /**
   * A write failed: the changes gathered behind it fail with it (their items were not
   * stored), and every window no cycle still carries is forgotten in memory (windows may
   * hold seqs of the failed writes; the store has the truth).
   */
  writeFailed (): void {
    for (const w of this.changes.values()) w.pending--
    this.changes = new Map()
    this.quarantine = []
    for (const [dev, w] of this.cache) if (w.pending === 0) this.cache.delete(dev)
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }
}
