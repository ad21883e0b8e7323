/**
 * Embedded LevelDB sink: readings, dedup state and counters in one LevelDB under dataDir.
 *
 * Layout: see leveldb-keys.ts (readings by device, boot, seq; one dedup entry and one
 * evicted entry per (gateway, epoch, partition); one stats entry; a format marker).
 *
 * Invariants
 * - One `storeBatch` is one atomic LevelDB batch written with `sync: true` holding its
 *   readings, the new dedup state of every partition it touched, its evicted ranges and the
 *   counters. Concurrent requests are group-committed (group-commit.ts): several requests
 *   per fsync, in order, and none is answered before its group is durable.
 * - Dedup decisions are taken synchronously in memory (one JS turn per request), so two
 *   requests racing on the same (gateway, epoch, p, s) cannot both get `stored`; the loser's
 *   `duplicate` is released only after the winner's write is durable (same or earlier group).
 * - Dedup state per partition is { floor, runs of stored seqs >= floor }: it shrinks as the
 *   gateway's floors advance, so it is bounded by what the gateway still holds, not by
 *   everything ever stored. Readings themselves are kept forever (query API).
 * - Evicted ranges are merged per partition; a range reported again adds nothing.
 * - Natural key: a reading with a device seq is also identified by (fleet, device, boot, seq),
 *   kept as an n! key written in the same batch as the reading. A copy through another
 *   gateway or epoch of the same fleet finds it (read before the apply step, plus `natural` below for copies not yet
 *   durable or written after that read began) and is answered duplicate, not stored.
 * - Memory: the dedup state of at most `maxEpochsPerGateway` epochs per gateway is kept in
 *   memory (leveldb-epochs.ts); older epochs reload from disk when they come back.
 * - Queries walk the device's key range with an iterator and stop at `limit` readings,
 *   `maxBytes` of values, or QUERY_SCAN_LIMIT keys skipped for other gateways (fleets).
 *
 * - Layout upgrades (leveldb-upgrade.ts) run on open before anything else; each is
 *   idempotent and bumps the format marker last.
 *
 * Crash behaviour: LevelDB's log makes each batch all-or-nothing, so after kill -9 or power
 * loss the store holds exactly the acknowledged batches (plus possibly a last batch whose
 * answer was never sent: the gateway resends it and gets `duplicate`). If a write fails,
 * the in-memory state of everything not yet durable is dropped and reloaded from disk, and
 * every request of the failed group and behind it gets an error (the gateway retries).
 */
import { Level } from 'level'
import { mkdir } from 'node:fs/promises'
import { StoreError } from '../../protocol/index.ts'
import { PartitionDedup, RunSet, type DedupSnapshot, type Run } from '../dedup.ts'
import { GroupCommitter, type Op } from './group-commit.ts'
import { EpochLru } from './leveldb-epochs.ts'
import {
  bootPrefix, decodeCursor, decodeReading, encodeReadingValue, dedupKey, devicePrefix, encodeCursor, evictedKey, FORMAT_VERSION, gatewayHexOfKey, hex,
  META_FORMAT_KEY, naturalKey, partitionSuffix, prefixEnd, readingKey, STATS_KEY, seqKey
} from './leveldb-keys.ts'
import { upgradeLayout } from './leveldb-upgrade.ts'
import { DEFAULT_FLEET, zeroCounts, type Counts, type DedupState, type DevicePage, type DeviceQuery, type ItemOutcome, type Sink, type Stats, type StoredReading, type StoreRequest } from './types.ts'

export type LevelDbSinkOptions = {
  dataDir: string
  /** Called after each group write: requests in it, LevelDB ops, seconds. */
  onCommit?: (requests: number, ops: number, seconds: number) => void
  /** Epochs per gateway whose dedup state stays in memory (default 4). */
  maxEpochsPerGateway?: number
}

/** Keys a query may skip (other fleets' readings) before it returns a short page with `next`. */
export const QUERY_SCAN_LIMIT = 20_000

function cloneStats (s: Stats): Stats {
  const gateways: Record<string, Counts> = {}
  for (const [k, v] of Object.entries(s.gateways)) gateways[k] = { ...v }
  return { stored: s.stored, duplicates: s.duplicates, rejected: s.rejected, evicted: s.evicted, gateways }
}

function emptyStats (): Stats { return { ...zeroCounts(), gateways: {} } }

export class LevelDbSink implements Sink {
  readonly kind = 'leveldb'
  private readonly db: Level<string, string>
  private readonly committer: GroupCommitter
  /** partition suffix -> dedup state (applied, maybe not yet durable). */
  private readonly dedup = new Map<string, PartitionDedup>()
  private readonly evicted = new Map<string, RunSet>()
  private readonly loading = new Map<string, Promise<void>>()
  /** `{gwHex}!{epHex}` -> partition suffixes loaded in `dedup`/`evicted` (for eviction). */
  private readonly epochSuffixes = new Map<string, Set<string>>()
  private readonly epochs: EpochLru
  /** Counters including requests not yet durable; `durable` is what disk holds. */
  private live: Stats = emptyStats()
  private durable: Stats = emptyStats()
  private snapshotInFlight: Stats = emptyStats()
  /** Bumped when in-memory state is dropped after a failed write. */
  private generation = 0
  private recovering: Promise<void> | null = null
  private closing: Promise<void> | null = null
  /**
   * Natural keys applied recently: 0 while their write is not durable, else the number of
   * the completion that made them durable. A request's disk read of n! keys may miss
   * writes completed after it began, so an entry is kept until every read in progress
   * began after its completion (`readers` holds each read's starting completion number).
   */
  private readonly natural = new Map<string, number>()
  private completions = 0
  private readonly readers = new Set<{ from: number }>()

  private constructor (db: Level<string, string>, opts: LevelDbSinkOptions) {
    this.db = db
    this.epochs = new EpochLru(opts.maxEpochsPerGateway ?? 4, (gw, ep) => {
      const key = `${gw}!${ep}`
      for (const sfx of this.epochSuffixes.get(key) ?? []) { this.dedup.delete(sfx); this.evicted.delete(sfx) }
      this.epochSuffixes.delete(key)
    })
    this.committer = new GroupCommitter(
      async (ops) => {
        const snap = this.snapshotInFlight
        // A chained batch: measured 3-5x faster than db.batch(array) for 500-op groups.
        const batch = this.db.batch()
        for (const op of ops) {
          if (op.type === 'put') batch.put(op.key, op.value)
          else batch.del(op.key)
        }
        await batch.write({ sync: true })
        this.durable = snap
      },
      () => {
        this.snapshotInFlight = cloneStats(this.live)
        return [{ type: 'put', key: STATS_KEY, value: JSON.stringify(this.snapshotInFlight) }]
      },
      () => this.dropVolatileState(),
      opts.onCommit
    )
  }

  static async open (opts: LevelDbSinkOptions): Promise<LevelDbSink> {
    await mkdir(opts.dataDir, { recursive: true })
    const db = new Level<string, string>(opts.dataDir, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
    try {
      await db.open()
    } catch (err) {
      throw new StoreError(`cannot open LevelDB at ${opts.dataDir}: ${(err as Error).message}`, { cause: err, retryable: false })
    }
    const sink = new LevelDbSink(db, opts)
    try {
      const format = await db.get(META_FORMAT_KEY)
      if (format === undefined) await db.put(META_FORMAT_KEY, FORMAT_VERSION, { sync: true })
      else if (format === '1' || format === '2') await upgradeLayout(db, format)
      else if (format !== FORMAT_VERSION) throw new StoreError(`${opts.dataDir} has ingest layout ${format}; this build reads ${FORMAT_VERSION}`, { retryable: false })
      await sink.loadStats()
    } catch (err) {
      await db.close()
      throw err
    }
    return sink
  }

  private async loadStats (): Promise<void> {
    const raw = await this.db.get(STATS_KEY)
    const s = raw === undefined ? emptyStats() : JSON.parse(raw) as Stats
    this.durable = s
    this.live = cloneStats(s)
  }

  private dropVolatileState (): void {
    this.generation++
    this.dedup.clear()
    this.evicted.clear()
    this.loading.clear()
    this.epochSuffixes.clear()
    this.live = cloneStats(this.durable)
    for (const [k, v] of this.natural) if (v === 0) this.natural.delete(k)
    // Counters on disk are `durable` already; reloading guards against a partly applied write.
    this.recovering = this.loadStats().catch(() => {}).finally(() => { this.recovering = null })
  }

  private load (suffix: string, withEvicted: boolean): Promise<void> | null {
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

  async storeBatch (req: StoreRequest): Promise<ItemOutcome[]> {
    if (this.closing) throw new StoreError('sink is closing', { retryable: true })
    const gwHex = hex(req.gateway)
    const epHex = hex(req.epoch)
    const release = this.epochs.acquire(gwHex, epHex)
    try {
      return await this.loadAndApply(req, gwHex, epHex)
    } finally {
      release()
    }
  }

  private async loadAndApply (req: StoreRequest, gwHex: string, epHex: string): Promise<ItemOutcome[]> {
    const parts = new Set<number>()
    for (const it of req.items) parts.add(it[0])
    for (const [p] of req.floors) parts.add(p)
    const evictedParts = new Set(req.evicted.map(([p]) => p))
    for (const p of evictedParts) parts.add(p)
    const suffixes = new Map<number, string>()
    for (const p of parts) suffixes.set(p, partitionSuffix(gwHex, epHex, p))

    const fleet = req.fleet ?? DEFAULT_FLEET
    const natKeys = req.items.map((it) => it[3] === null ? null : naturalKey(fleet, it[2], it[4], it[3]))
    const natLookup = natKeys.filter((k): k is string => k !== null)
    const reader = { from: 0 }
    let onDisk: Set<string>
    try {
      // Load every partition this request touches and look up its natural keys, then apply
      // it in one synchronous turn.
      for (;;) {
        if (this.recovering) await this.recovering
        const gen = this.generation
        reader.from = this.completions
        this.readers.add(reader)
        const loads: Promise<void>[] = []
        for (const [p, sfx] of suffixes) { const l = this.load(sfx, evictedParts.has(p)); if (l) loads.push(l) }
        let found: (string | undefined)[]
        try {
          [found] = await Promise.all([natLookup.length > 0 ? this.db.getMany(natLookup) : [], ...loads])
        } catch (err) {
          throw new StoreError(`cannot read dedup state: ${(err as Error).message}`, { cause: err })
        }
        onDisk = new Set(natLookup.filter((_, i) => found[i] !== undefined))
        if (gen === this.generation && !this.recovering) break
      }
      if (this.closing) throw new StoreError('sink is closing', { retryable: true })
      return this.apply(req, suffixes, evictedParts, gwHex, epHex, natKeys, onDisk)
    } finally {
      this.readers.delete(reader)
      this.pruneNatural()
    }
  }

  /** Forgets natural keys that every read in progress would find on disk. */
  private pruneNatural (): void {
    let oldest = this.completions
    for (const r of this.readers) oldest = Math.min(oldest, r.from)
    for (const [k, v] of this.natural) {
      if (v === 0) continue
      if (v > oldest) break // completion numbers grow in insertion order
      this.natural.delete(k)
    }
  }

  private apply (req: StoreRequest, suffixes: Map<number, string>, evictedParts: Set<number>, gwHex: string, epHex: string, natKeys: (string | null)[], natOnDisk: Set<string>): Promise<ItemOutcome[]> {
    const ops: Op[] = []
    const touched = new Set<string>()
    const outcomes: ItemOutcome[] = new Array(req.items.length)
    const newNat: string[] = []
    let stored = 0
    let duplicates = 0
    for (let i = 0; i < req.items.length; i++) {
      const [p, s, device, seq, boot, ts, rx, values] = req.items[i]!
      const sfx = suffixes.get(p)!
      let verdict = this.dedup.get(sfx)!.check(s)
      const nk = natKeys[i]!
      if (verdict === 'stored' && nk !== null && (this.natural.has(nk) || natOnDisk.has(nk))) {
        verdict = 'duplicate'
        touched.add(sfx) // s is recorded as seen: its retransmits are duplicates by the transport key too
      }
      outcomes[i] = verdict
      if (verdict === 'duplicate') { duplicates++; continue }
      stored++
      touched.add(sfx)
      if (nk !== null) { this.natural.set(nk, 0); newNat.push(nk); ops.push({ type: 'put', key: nk, value: '' }) }
      ops.push({ type: 'put', key: readingKey(device, boot, seq, rx, gwHex, epHex, p, s), value: encodeReadingValue(p, s, seq, boot, ts, rx, values) })
    }
    for (const [p, floor] of req.floors) {
      const sfx = suffixes.get(p)!
      if (this.dedup.get(sfx)!.raiseFloor(floor)) touched.add(sfx)
    }
    let evictedNew = 0
    for (const [p, from, to] of req.evicted) {
      const sfx = suffixes.get(p)!
      const n = this.evicted.get(sfx)!.addRange(from, to)
      if (n > 0) {
        evictedNew += n
        ops.push({ type: 'put', key: evictedKey(sfx), value: JSON.stringify({ runs: this.evicted.get(sfx)!.toJSON() }) })
      }
    }
    for (const sfx of touched) ops.push({ type: 'put', key: dedupKey(sfx), value: JSON.stringify(this.dedup.get(sfx)!.snapshot()) })
    const g = this.live.gateways[req.gateway] ??= zeroCounts()
    for (const c of [this.live, g]) {
      c.stored += stored
      c.duplicates += duplicates
      c.rejected += req.rejected
      c.evicted += evictedNew
    }
    return this.committer.submit(ops).then(() => {
      const n = ++this.completions
      for (const k of newNat) if (this.natural.get(k) === 0) { this.natural.delete(k); this.natural.set(k, n) }
      this.pruneNatural()
      return outcomes
    }, (err: unknown) => {
      throw new StoreError(`LevelDB write failed: ${(err as Error).message}`, { cause: err, retryable: true })
    })
  }

  async queryDevice (q: DeviceQuery): Promise<DevicePage> {
    const range: { gt?: string, gte?: string, lt: string } = { lt: '' }
    const prefix = q.boot === undefined ? devicePrefix(q.device) : bootPrefix(q.device, q.boot)
    range.lt = prefixEnd(prefix)
    range.gte = q.fromSeq === undefined ? prefix : prefix + seqKey(q.fromSeq, 0)
    if (q.cursor !== undefined) {
      const after = decodeCursor(q.cursor, q.device)
      if (after >= range.gte) { delete range.gte; range.gt = after }
    }
    const only = q.gateways === undefined ? null : new Set(q.gateways.map(hex))
    const maxBytes = q.maxBytes ?? Infinity
    const readings: StoredReading[] = []
    let bytes = 0
    let skipped = 0
    let last: string | null = null
    let next: string | null = null
    const it = this.db.iterator(range)
    try {
      for (;;) {
        const rows = await it.nextv(Math.min(q.limit + 1, 1000))
        if (rows.length === 0) break
        for (const [k, v] of rows) {
          if (only !== null && !only.has(gatewayHexOfKey(k))) {
            last = k
            if (++skipped >= QUERY_SCAN_LIMIT) { next = encodeCursor(k); break }
            continue
          }
          if (readings.length >= q.limit || (readings.length > 0 && bytes + v.length > maxBytes)) { next = encodeCursor(last!); break }
          readings.push(decodeReading(k, v))
          bytes += v.length
          last = k
        }
        if (next !== null) break
      }
    } finally {
      await it.close()
    }
    return { readings, next }
  }

  async stats (): Promise<Stats> {
    return cloneStats(this.durable)
  }

  /** Dedup state of the partitions loaded in memory (each is loaded on first use). */
  dedupState (): DedupState {
    let seqs = 0
    let runs = 0
    for (const d of this.dedup.values()) { seqs += d.seen.size; runs += d.seen.runCount }
    return { partitions: this.dedup.size, seqs, runs, epochs: this.epochs.size, epochsEvicted: this.epochs.evicted }
  }

  close (): Promise<void> {
    this.closing ??= (async () => {
      await this.committer.idle()
      await this.db.close()
    })()
    return this.closing
  }
}
