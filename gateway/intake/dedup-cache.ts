/**
 * The intake's in-memory dedup windows: at most `maxDevices`, least recently used evicted
 * first (a hit moves the device to the young end, at most once a second; a Map keeps insertion order). A window
 * that a cycle not yet durable carries (`pending > 0`) is never evicted: its state is not
 * on disk yet, and reloading it would forget seqs. A window idle past dedupIdleForgetMs
 * counts as absent (store/dedup-sweep.ts deletes it on disk).
 *
 * Named for what it holds, a device's anti-replay window (store/dedup.ts): the ingest's
 * leveldb sink has a cache of another thing, per-partition dedup state loaded from its own
 * database.
 */
import type { DedupWindow } from '../store/index.ts'

export class DedupWindowCache {
  private readonly windows = new Map<string, DedupWindow>()

  constructor (private readonly maxDevices: number) {}

  get size (): number { return this.windows.size }

  /**
   * The device's window, refreshed as most recently used; undefined when not cached, or
   * when the device was idle past `idleS` (the window is then forgotten).
   */
  get (device: string, nowS = 0, idleS = Infinity): DedupWindow | undefined {
    const w = this.windows.get(device)
    if (w !== undefined) {
      if (w.pending === 0 && w.idleSince(nowS, idleS)) { this.windows.delete(device); return undefined }
      // moved to the young end at most once per second (nowS = 0: always): a Map delete and
      // set on every reading was ~1.5% of the intake's CPU, and LRU order to the second is
      // all eviction needs
      if (nowS === 0 || w.cacheTouchedS !== nowS) {
        this.windows.delete(device)
        this.windows.set(device, w)
        w.cacheTouchedS = nowS
      }
    }
    return w
  }

  /** Adds (or refreshes) a window; past the bound, evicts the least recently used down to 90%. */
  set (device: string, w: DedupWindow): void {
    this.windows.delete(device)
    this.windows.set(device, w)
    if (this.windows.size <= this.maxDevices) return
    for (const [dev, win] of this.windows) {
      if (this.windows.size <= this.maxDevices * 0.9) break
      if (win.pending === 0) this.windows.delete(dev)
    }
  }

  /** Forgets every window not pinned by a pending write (after a failed write: disk has the truth). */
  dropUnpinned (): void {
    for (const [dev, w] of this.windows) if (w.pending === 0) this.windows.delete(dev)
  }

  has (device: string): boolean { return this.windows.has(device) }
}
