/**
 * The latest reading of each device of each fleet, for the ingest page (keyed by fleet and
 * device: fleets may use the same device ids, and a fleet-bound read token sees only its
 * own fleet's entries). Bounded: at most `max` devices,
 * the least recently updated forgotten first (an entry moves to the Map's end at most once
 * per 5 s, so a busy device costs one Map lookup and a few field writes per stored item).
 */
import type { BatchItem } from '../../protocol/index.ts'

const TOUCH_GRAIN_MS = 5000

export type RecentReading = { fleet: string, device: string, gateway: string, seq: number | null, boot: number | string | null, ts: number | null, rx: number, values: BatchItem[7], storedAt: number }

type Entry = RecentReading & { touched: number }

export class RecentReadings {
  private readonly map = new Map<string, Entry>()

  constructor (private readonly max = 1000) {}

  /** Items just stored for `gateway` of `fleet` (only those whose outcome is `stored`). */
  record (fleet: string, gateway: string, items: readonly BatchItem[], outcomes: readonly string[]): void {
    const now = Date.now()
    for (let i = 0; i < items.length; i++) {
      if (outcomes[i] !== 'stored') continue
      const it = items[i]!
      const device = it[2]
      const key = `${fleet}\u0000${device}`
      let e = this.map.get(key)
      if (e === undefined) {
        if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value as string)
        e = { fleet, device, gateway, seq: null, boot: null, ts: null, rx: 0, values: {}, storedAt: now, touched: now }
        this.map.set(key, e)
      } else if (now - e.touched >= TOUCH_GRAIN_MS) {
        e.touched = now
        this.map.delete(key)
        this.map.set(key, e)
      }
      e.gateway = gateway; e.seq = it[3]; e.boot = it[4]; e.ts = it[5]; e.rx = it[6]; e.values = it[7]; e.storedAt = now
    }
  }

  /**
   * The most recently stored devices first (matching `q`, case-insensitive), at most
   * `limit`, of `fleet` only unless it is undefined; `tracked` counts that fleet's devices.
   */
  latest (limit = 50, q = '', fleet?: string): { tracked: number, readings: RecentReading[] } {
    const needle = q.toLowerCase()
    const all: RecentReading[] = []
    let tracked = 0
    for (const e of this.map.values()) {
      if (fleet !== undefined && e.fleet !== fleet) continue
      tracked++
      if (needle && !e.device.toLowerCase().includes(needle)) continue
      all.push({ fleet: e.fleet, device: e.device, gateway: e.gateway, seq: e.seq, boot: e.boot, ts: e.ts, rx: e.rx, values: e.values, storedAt: e.storedAt })
    }
    all.sort((a, b) => b.storedAt - a.storedAt || (a.device < b.device ? -1 : 1))
    return { tracked, readings: all.slice(0, Math.max(1, Math.min(limit, 500))) }
  }
}
