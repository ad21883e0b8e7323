/**
 * Per-device figures for the admin page's devices table: last seen, last seq, readings/s,
 * resends deduped, dead letters.
 *
 * Bounded and cheap on the per-reading path: one Map lookup and a few field writes a
 * reading. At most `max` devices are kept; a full table forgets the least recently seen
 * device first. "Recently" is kept at a 5 s grain: an entry is moved to the Map's end
 * (delete + set) at most once per 5 s, so a device sending 100 readings/s costs one move
 * every 500 readings, and the Map's insertion order is (to that grain) least recently seen
 * first. Readings/s is the count over the last completed window of >= 10 s.
 */

const TOUCH_GRAIN_MS = 5000
const RATE_WINDOW_MS = 10_000

class DeviceEntry {
  lastSeen = 0
  touched = 0
  lastSeq: number | null = null
  readings = 0
  duplicates = 0
  deadLetters = 0
  winStart = 0
  winCount = 0
  rate = -1
  constructor (readonly device: string, now: number) { this.winStart = now; this.touched = now }
}

export type DeviceRow = {
  device: string
  lastSeen: number
  lastSeq: number | null
  readings: number
  readingsPerS: number
  duplicates: number
  deadLetters: number
}

export type DeviceQuery = { q?: string, limit?: number, sort?: 'device' | 'lastSeen' | 'rate' }

export class DeviceStats {
  private readonly map = new Map<string, DeviceEntry>()
  private forgotten = 0

  constructor (private readonly max: number) {}

  get size (): number { return this.map.size }

  /** A valid reading arrived from `device` (duplicates included). */
  reading (device: string, seq: number | null): void {
    if (this.max === 0) return
    const now = Date.now()
    const e = this.entry(device, now)
    e.lastSeen = now
    if (seq !== null) e.lastSeq = seq
    e.readings++
    if (now - e.winStart >= RATE_WINDOW_MS) {
      e.rate = (e.readings - e.winCount) * 1000 / (now - e.winStart)
      e.winStart = now
      e.winCount = e.readings
    }
  }

  /** A resend was recognised as a duplicate (acknowledged, not stored again). */
  duplicate (device: string): void {
    if (this.max === 0) return
    this.entry(device, Date.now()).duplicates++
  }

  /** A reading of `device` went to the dead-letter store (at intake or rejected upstream). */
  deadLetter (device: string): void {
    if (this.max === 0) return
    this.entry(device, Date.now()).deadLetters++
  }

  private entry (device: string, now: number): DeviceEntry {
    let e = this.map.get(device)
    if (e === undefined) {
      if (this.map.size >= this.max) {
        // the first key is (to the touch grain) the least recently seen device
        const first = this.map.keys().next().value as string
        this.map.delete(first)
        this.forgotten++
      }
      e = new DeviceEntry(device, now)
      this.map.set(device, e)
    } else if (now - e.touched >= TOUCH_GRAIN_MS) {
      e.touched = now
      this.map.delete(device)
      this.map.set(device, e)
    }
    return e
  }

  /** Devices whose id contains `q` (case-insensitive), at most `limit` of them. */
  query (opts: DeviceQuery = {}): { tracked: number, forgotten: number, matched: number, devices: DeviceRow[] } {
    const now = Date.now()
    const q = (opts.q ?? '').toLowerCase()
    const limit = Math.max(1, Math.min(opts.limit ?? 100, 1000))
    const rows: DeviceRow[] = []
    for (const e of this.map.values()) {
      if (q && !e.device.toLowerCase().includes(q)) continue
      rows.push({
        device: e.device,
        lastSeen: e.lastSeen,
        lastSeq: e.lastSeq,
        readings: e.readings,
        readingsPerS: round2(rateNow(e, now)),
        duplicates: e.duplicates,
        deadLetters: e.deadLetters
      })
    }
    const sort = opts.sort ?? 'device'
    if (sort === 'device') rows.sort((a, b) => a.device < b.device ? -1 : a.device > b.device ? 1 : 0)
    else if (sort === 'lastSeen') rows.sort((a, b) => b.lastSeen - a.lastSeen)
    else rows.sort((a, b) => b.readingsPerS - a.readingsPerS)
    return { tracked: this.map.size, forgotten: this.forgotten, matched: rows.length, devices: rows.slice(0, limit) }
  }
}

/** The last completed window's rate; the open window's for a new device or one quiet since. */
function rateNow (e: DeviceEntry, now: number): number {
  const open = now - e.winStart
  if (open < RATE_WINDOW_MS && e.rate >= 0) return e.rate
  // no completed window yet (a new device), or quiet since: the open window's rate
  return (e.readings - e.winCount) * 1000 / Math.max(open, 1000)
}

const round2 = (x: number): number => Math.round(x * 100) / 100
