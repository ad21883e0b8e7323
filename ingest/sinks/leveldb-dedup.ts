/**
 * The leveldb sink's dedup cache: per (gateway, epoch, partition) suffix, the dedup state
 * (floor and runs of stored seqs, ../dedup.ts) and the evicted ranges, loaded from LevelDB on
 * first use (leveldb-keys.ts: `dedupKey`, `evictedKey`) and changed in memory by the apply
 * step before its write is durable. At most `maxEpochsPerGateway` epochs per gateway stay in
 * memory (leveldb-epochs.ts); an evicted epoch reloads from disk when it comes back.
 *
 * `drop()` forgets everything (after a failed write: memory may hold state that disk does
 * not) and bumps `generation`, so a load that began before the drop does not install what it
 * read, and a request that loaded before it loads again. Guarded by
 * test/integration/sink-contract.ts and test/unit/ingest-epochs.test.ts.
 */
import type { Level } from 'level'
import { PartitionDedup, RunSet, type DedupSnapshot, type Run } from '../dedup.ts'
import { EpochLru } from './leveldb-epochs.ts'
import { dedupKey, evictedKey } from './leveldb-keys.ts'
import type { DedupState } from './types.ts'

export class DedupCache {
  /** partition suffix -> dedup state (applied, maybe not yet durable). */
  private readonly dedup = new Map<string, PartitionDedup>()
  private readonly evicted = new Map<string, RunSet>()
  private readonly loading = new Map<string, Promise<void>>()
  /** `{gwHex}!{epHex}` -> partition suffixes loaded in `dedup`/`evicted` (for eviction). */
  private readonly epochSuffixes = new Map<string, Set<string>>()
  readonly epochs: EpochLru
  /** Bumped when in-memory state is dropped after a failed write. */
  generation = 0

  constructor (private readonly db: Level<string, string>, maxEpochsPerGateway: number) {
    this.epochs = new EpochLru(maxEpochsPerGateway, (gw, ep) => {
      const key = `${gw}!${ep}`
      for (const sfx of this.epochSuffixes.get(key) ?? []) { this.dedup.delete(sfx); this.evicted.delete(sfx) }
      this.epochSuffixes.delete(key)
    })
  }

  /** The dedup state of a loaded partition (`load` first). */
  partition (suffix: string): PartitionDedup { return this.dedup.get(suffix)! }

  /** The evicted ranges of a partition loaded `withEvicted`. */
  evictedRuns (suffix: string): RunSet { return this.evicted.get(suffix)! }

  /** Loads a partition's state unless it is in memory: null when nothing is to load. */
  load (suffix: string, withEvicted: boolean): Promise<void> | null {
    const needDedup = !this.dedup.has(suffix)
    const needEvicted = withEvicted && !this.evicted.has(suffix)
    if (!needDedup && !needEvicted) return null
    const lk = `${suffix}|${needEvicted ? 'e' : ''}`
    let p = this.loading.get(lk)
    if (p) return p
    const gen = this.generation
    p = (async () => {
      const [d, e] = await this.db.getMany([dedupKey(suffix), evictedKey(suffix)])
      if (gen !== this.generation) return
      const ek = suffix.slice(0, suffix.lastIndexOf('!'))
      let set = this.epochSuffixes.get(ek)
      if (!set) this.epochSuffixes.set(ek, set = new Set())
      set.add(suffix)
      if (!this.dedup.has(suffix)) this.dedup.set(suffix, new PartitionDedup(d === undefined ? undefined : JSON.parse(d) as DedupSnapshot))
      if (needEvicted && !this.evicted.has(suffix)) this.evicted.set(suffix, new RunSet(e === undefined ? [] : (JSON.parse(e) as { runs: Run[] }).runs))
    })().finally(() => { this.loading.delete(lk) })
    this.loading.set(lk, p)
    return p
  }

  drop (): void {
    this.generation++
    this.dedup.clear()
    this.evicted.clear()
    this.loading.clear()
    this.epochSuffixes.clear()
  }

  /** Dedup state of the partitions loaded in memory (each is loaded on first use). */
  state (): DedupState {
    let seqs = 0
    let runs = 0
    for (const d of this.dedup.values()) { seqs += d.seen.size; runs += d.seen.runCount }
    return { partitions: this.dedup.size, seqs, runs, epochs: this.epochs.size, epochsEvicted: this.epochs.evicted }
  }
}
