/**
 * Dedup windows on disk (`d!{deviceId}`, layout in dedup.ts). A window changed by a reading
 * is written in the same cycle as the reading's item, so after a crash the window and the
 * items agree. An unreadable window is quarantined and the device starts a new one.
 */
import type { Logger } from 'pino'
import type { GroupCommit } from '../../common/index.ts'
import type { Cycle } from './cycle.ts'
import type { Db } from './db.ts'
import { DedupWindow } from './dedup.ts'
import { K } from './keys.ts'

export class DedupPersistence {
  constructor (private readonly db: Db, private readonly gc: GroupCommit<Cycle>, private readonly log: Logger) {}

  async load (device: string): Promise<DedupWindow | null> {
    const buf = await this.db.get(K.dedup(device))
    if (buf === undefined) return null
    try {
      return DedupWindow.decode(buf)
    } catch (err) {
      this.log.warn({ device, err }, 'dedup window unreadable; quarantined, starting a new window')
      this.gc.current.quarantined({ key: K.dedup(device), raw: buf, reason: (err as Error).message })
      this.gc.schedule()
      return null
    }
  }

  /** Records a changed window in the current cycle (once per cycle; `pending` pins it in caches). */
  save (device: string, w: DedupWindow): void {
    this.gc.current.saveWindow(device, w)
    this.gc.schedule()
  }
}
