/**
 * The intake's in-memory dedup windows: at most `maxDevices`, least recently used evicted
 * first (a hit moves the device to the young end; a Map keeps insertion order). A window
 * that a cycle not yet durable carries (`pending > 0`) is never evicted: its state is not
 * on disk yet, and reloading it would forget seqs.
 */
import type { DedupWindow } from '../store/index.ts'

export class DedupCache {
  private readonly windows = new Map<string, DedupWindow>()

  constructor (private readonly maxDevices: number) {}

  get size (): number { return this.windows.size }

  /** The device's window, refreshed as most recently used; undefined when not cached. */
  get (device: string): DedupWindow | undefined {
    const w = this.windows.get(device)
    if (w !== undefined) {
      this.windows.delete(device)
      this.windows.set(device, w)
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
