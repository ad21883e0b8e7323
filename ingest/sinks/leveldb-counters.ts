/**
 * The leveldb sink's counters (stored, duplicates, rejected, evicted, conflicts; in all and
 * per gateway; a store written before conflicts were counted reads them as 0), kept in the one STATS_KEY entry (leveldb-keys.ts) and written with every group
 * commit. Three copies: `live` includes requests not yet durable, `inFlight` is the snapshot
 * the group being written carries, `durable` is what disk holds and what `stats()` answers.
 * After a failed write `live` goes back to `durable`, and `reload` rereads disk in case a
 * write was partly applied. Guarded by test/integration/sink-contract.ts (stats cases).
 */
import type { Level } from 'level'
import { STATS_KEY } from './leveldb-keys.ts'
import { COUNT_KINDS, zeroCounts, type Counts, type Stats } from './types.ts'

/** A copy; kinds missing from an older entry count 0. */
function counts (c: Partial<Counts>): Counts {
  const out = zeroCounts()
  for (const k of COUNT_KINDS) out[k] = c[k] ?? 0
  return out
}

function cloneStats (s: Stats): Stats {
  const gateways: Record<string, Counts> = {}
  for (const [k, v] of Object.entries(s.gateways)) gateways[k] = counts(v)
  return { ...counts(s), gateways }
}

function emptyStats (): Stats { return { ...zeroCounts(), gateways: {} } }

export class SinkCounters {
  private live: Stats = emptyStats()
  private durable: Stats = emptyStats()
  private inFlight: Stats = emptyStats()

  constructor (private readonly db: Level<string, string>) {}

  async reload (): Promise<void> {
    const raw = await this.db.get(STATS_KEY)
    const s = raw === undefined ? emptyStats() : cloneStats(JSON.parse(raw) as Stats)
    this.durable = s
    this.live = cloneStats(s)
  }

  /** A request's counts, applied now (durable with its group). */
  add (gateway: string, n: Counts): void {
    const g = this.live.gateways[gateway] ??= zeroCounts()
    for (const c of [this.live, g]) for (const k of COUNT_KINDS) c[k] += n[k]
  }

  /** The value of STATS_KEY for the group about to be written. */
  snapshot (): string {
    this.inFlight = cloneStats(this.live)
    return JSON.stringify(this.inFlight)
  }

  /** Called as the group carrying the last snapshot is written; the returned function marks it durable. */
  writing (): () => void {
    const snap = this.inFlight
    return () => { this.durable = snap }
  }

  /** A write failed: forget what is not durable. */
  rollback (): void { this.live = cloneStats(this.durable) }

  stats (): Stats { return cloneStats(this.durable) }
}
