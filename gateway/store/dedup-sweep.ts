/**
 * Forgets, on disk, the dedup windows of devices idle longer than `dedupIdleForgetMs`
 * (the intake treats such a window as absent already, in memory and when it loads one:
 * this only reclaims the space). Runs inside a write cycle, so no other write lands between
 * its scan and its deletes: a window saved since was written by an earlier cycle with a
 * fresh `seenAtS`, or is in this cycle (skipped). Bounded: at most CHUNK keys a cycle, the
 * scan resumes where it stopped.
 */
import type { Logger } from 'pino'
import type { Cycle } from './cycle.ts'
import type { Db } from './db.ts'
import { DedupWindow } from './dedup.ts'
import { K } from './keys.ts'

const CHUNK = 1000
/** How often a sweep starts (at most; shorter for short idle times). */
const MAX_INTERVAL_MS = 3600_000

export class DedupSweep {
  /** a sweep is under way or due: the writer runs a chunk with its next cycle */
  wanted = false
  private after: string | undefined
  private timer: NodeJS.Timeout | null = null
  private forgottenInSweep = 0

  constructor (private readonly db: Db, private readonly idleMs: number, private readonly log: Logger, schedule: () => void) {
    const every = Math.max(1000, Math.min(MAX_INTERVAL_MS, Math.floor(idleMs / 2)))
    this.timer = setInterval(() => { this.wanted = true; schedule() }, every)
    this.timer.unref()
  }

  /** Keys of idle windows to delete in cycle `c` (one chunk of the scan). */
  async plan (c: Cycle): Promise<string[]> {
    const nowS = Math.floor(Date.now() / 1000)
    const idleS = Math.floor(this.idleMs / 1000)
    const range = this.after === undefined ? K.all('dedup') : { gt: this.after, lt: K.all('dedup').lt }
    const chunk = await this.db.iterator({ ...range, limit: CHUNK }).all()
    const out: string[] = []
    for (const [k, v] of chunk) {
      if (c.devices.has(K.deviceOfDedup(k))) continue
      let w: DedupWindow
      try { w = DedupWindow.decode(v) } catch { continue } // unreadable: quarantined when loaded
      if (w.idleSince(nowS, idleS)) out.push(k)
    }
    this.forgottenInSweep += out.length
    if (chunk.length < CHUNK) {
      if (this.forgottenInSweep) this.log.info({ devices: this.forgottenInSweep, idleMs: this.idleMs }, 'dedup state of idle devices forgotten')
      this.after = undefined
      this.wanted = false
      this.forgottenInSweep = 0
    } else {
      this.after = chunk[chunk.length - 1]![0]
    }
    return out
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }
}
