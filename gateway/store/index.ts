/**
 * The gateway's durable buffer: a partitioned log in LevelDB (docs/design.md section 5).
 *
 * Invariants
 * - Every write goes through one serial writer. A write cycle gathers everything that
 *   arrived since the previous one (intake items, dedup windows, dead letters, upstream
 *   deletes, evictions) into ONE chained batch together with the partition counters it
 *   changes: group commit. `durability=power` writes it with `sync: true` (fsync);
 *   `process` without (survives kill -9, not power loss). A cycle that only deletes items
 *   answered upstream is written without fsync in both modes (writer.ts). Under
 *   `durability=power` a cycle starts at most once per `commitIntervalMs` (as Kafka's
 *   `flush.ms`), so under load each fsync carries more readings: less flash wear, a lone
 *   reading after a quiet spell is not delayed. Callbacks run only after the
 *   batch is on disk; a failed batch fails its callbacks AND the cycle gathering behind it
 *   (whose dedup decisions may depend on the failed one), so nothing is acknowledged that
 *   is not stored.
 * - Sequence numbers are allocated in memory, never rolled back, and the counter written
 *   with each batch is at least every seq in it: a seq is never reused, also after every
 *   item was deleted and the process restarted. (epoch, partition, seq) names an item
 *   forever; the epoch is a random id made when the store is created.
 * - `partitions` is recorded at creation; opening with another value is a ConfigError.
 * - A dedup window on disk never claims a seq whose item is not durable in the same or an
 *   earlier batch: a cycle's windows are encoded when the cycle is formed, before its write
 *   awaits anything (`Cycle.seal` in cycle.ts), so a seq the intake accepts while the cycle
 *   is written is claimed only by the next cycle, the one that carries its item. Otherwise
 *   a crash between the two cycles leaves a window ahead of its items and the device's
 *   resend is acknowledged as a duplicate of a reading never stored.
 * - Readers use bounded iterators from the partition head (lowest held seq): memory does
 *   not grow with the backlog.
 *
 * Crash behaviour: a batch is atomic in LevelDB's log, so after kill -9 either all of a
 * cycle (items + counters + dedup state) is there or none of it, and none of that cycle's
 * readings were acknowledged. Startup reads counters, heads and evicted ranges (O(partitions));
 * a counter that cannot be read is rebuilt by scanning its partition, an item that cannot
 * be read is moved to the dead-letter store when the flusher reaches it, an unreadable
 * dedup window is quarantined: reported, never a crash loop.
 *
 * Key layout: keys.ts. Where each concern lives:
 *   partition.ts      one partition's counters, head and the flusher's hold (named states)
 *   writer.ts         a cycle -> one LevelDB batch; apply and tell after it is durable
 *                     (the cycles themselves: common/group-commit.ts)
 *   reopen.ts         reopen LevelDB after a failed write
 *   quota.ts          maxBufferItems / maxBufferBytes and reservations
 *   evict.ts          fullPolicy=drop-oldest and the evicted ranges
 *   dead-letters.ts   dead-letter records and quarantine on disk (its header maps every
 *                     file dead letters touch); dlq-reader.ts reads them
 *   flush-side.ts     reads, hold/release, settle and the floor
 *   dedup.ts          one device's dedup window and its encoding
 *   dedup-windows.ts  DedupWindows: the windows in memory (LRU) and on disk, loading,
 *                     the idle sweep, maxDedupDevices; hands its changes to each cycle
 *   recover.ts        startup recovery
 */
import { EventEmitter } from 'node:events'
import { mkdir } from 'node:fs/promises'
import { Level } from 'level'
import type { Logger } from 'pino'
import { type EvictedRange } from '../../protocol/index.ts'
import { GroupCommit } from '../../common/index.ts'
import type { StoreConfig } from './config.ts'
import { cycleAwaited, type Append, type Cycle, type StoreEvents, type Waiter } from './cycle.ts'
import type { Db } from './db.ts'
import { DeadLetterStore, readDeadLetters, type DlqRecord } from './dead-letters.ts'
import { DedupWindows } from './dedup-windows.ts'
import { Evictions } from './evict.ts'
import { FlushSide, type ReadBatch } from './flush-side.ts'
import { itemCost, type Partition } from './partition.ts'
import { Quota } from './quota.ts'
import { recover, type Recovered } from './recover.ts'
import { Reopener } from './reopen.ts'
import { CycleWriter } from './writer.ts'
import { openError } from './open-error.ts'

export { DedupWindow, DEDUP_WINDOW } from './dedup.ts'
export type { DedupWindows } from './dedup-windows.ts'
export type { StoreConfig } from './config.ts'
export type { Append, StoreEvents, Waiter } from './cycle.ts'
export type { DlqRecord } from './dead-letters.ts'
export type { ReadBatch } from './flush-side.ts'
export { itemCost } from './partition.ts'

/** `settling`: items answered upstream whose delete is not durable yet (part of `depth`). */
export type PartitionStats = { p: number, depth: number, bytes: number, nextSeq: number, head: number, inFlight: boolean, settling: number }

export class Store extends EventEmitter<StoreEvents> {
  readonly db: Db
  readonly epoch: string
  readonly partitions: number
  readonly log: Logger
  private readonly parts: Partition[]
  private readonly quota: Quota
  private readonly dlq: DeadLetterStore
  private readonly evictions: Evictions
  private readonly reopener: Reopener
  private readonly gc: GroupCommit<Cycle>
  private readonly flushSide: FlushSide
  /** the per-device dedup windows, in memory and on disk (the intake checks seqs against them) */
  readonly dedup: DedupWindows
  private closed = false

  private constructor (readonly config: StoreConfig, db: Db, r: Recovered, dedup: DedupWindows, log: Logger) {
    super()
    this.db = db
    this.epoch = r.epoch
    this.partitions = r.parts.length
    this.parts = r.parts
    this.log = log
    this.quota = new Quota(config)
    for (const p of r.parts) this.quota.apply(p.items, p.bytes)
    this.dlq = new DeadLetterStore(r, config, db)
    this.evictions = new Evictions(r.evicted, db, r.parts, log)
    this.reopener = new Reopener(db, r.parts, this.quota, log, () => this.closed)
    this.dedup = dedup
    const writer = new CycleWriter({ config, db, parts: r.parts, quota: this.quota, deadLetters: this.dlq, evictions: this.evictions, reopener: this.reopener, dedup, events: this, log })
    this.gc = new GroupCommit(writer)
    this.flushSide = new FlushSide({ config, db, parts: r.parts, quota: this.quota, evictions: this.evictions, gc: this.gc, events: this, log })
  }

  static async open (config: StoreConfig, logger: Logger): Promise<Store> {
    const db = new Level<string, Buffer>(config.dataDir, {
      keyEncoding: 'utf8',
      valueEncoding: 'buffer',
      // memory (memtable, block cache) against write and read amplification: docs/raspberry-pi.md
      writeBufferSize: config.leveldbWriteBufferBytes,
      cacheSize: config.leveldbCacheBytes,
      blockSize: config.leveldbBlockBytes,
      compression: config.leveldbCompression
    })
    try {
      await mkdir(config.dataDir, { recursive: true })
      await db.open()
    } catch (err) {
      throw openError(config.dataDir, err)
    }
    try {
      return await Store.openOn(config, db, logger)
    } catch (err) {
      await db.close().catch(() => {})
      throw err
    }
  }

  /**
   * Recovers a store from an open database handle (`open` makes one from `dataDir`). The
   * acknowledgment-path simulation runs the store on an in-memory database through this.
   */
  static async openOn (config: StoreConfig, db: Db, logger: Logger): Promise<Store> {
    const log = logger.child({ component: 'store' })
    const r = await recover(config, db, log)
    let store: Store | null = null
    const dedup = await DedupWindows.open(db, config, log, () => store?.gc.schedule())
    store = new Store(config, db, r, dedup, log)
    log.info({ epoch: store.epoch, partitions: store.partitions, items: store.items, bytes: store.bytes, dlq: store.dlqCount, evictedRanges: store.evictions.count, dedupWindows: dedup.size }, 'store recovered')
    return store
  }

  /**
   * Stops the store's own timers without writing or closing anything: what a crash leaves
   * of it (the simulation abandons a store this way; everything else uses `close`).
   */
  abandon (): void {
    this.closed = true
    this.dedup.stop()
  }

  // ---- intake side ----------------------------------------------------------------

  /** Allocates the next seq of partition p. Never reused, even if the write then fails. */
  nextSeq (p: number): number {
    return this.parts[p]!.allocate()
  }

  /** The seq the next append to p will get. */
  peekNext (p: number): number {
    return this.parts[p]!.next
  }

  /**
   * The highest seq of p whose write is durable (-1 none). Seqs above it may belong to a
   * write that failed: such a seq never reaches the disk, and the floor never passes it.
   */
  lastCommitted (p: number): number {
    return this.parts[p]!.committedNext - 1
  }

  /**
   * True when one more item costing `cost` fits the quota (always true under drop-oldest).
   * `cost` is `itemCost` of the item's bytes, the measure the store accounts in.
   */
  hasRoom (cost: number): boolean {
    return this.quota.hasRoom(cost)
  }

  /** Appends an item (its wire CBOR) to the current cycle; `a.settled` runs once it is durable. */
  append (a: Append): void {
    this.quota.reserve(this.gc.current.append(a))
    this.gc.schedule()
  }

  deadLetter (rec: DlqRecord, cb: Waiter): void {
    this.gc.current.deadLetter(rec)
    this.sync(cb)
  }

  /**
   * Deletes dead-letter records (existing ids, each once) in the current cycle: appends
   * made in the same synchronous turn land in the same atomic batch (dlq replay).
   */
  dropDeadLetters (ids: number[], cb: Waiter): void {
    for (const id of ids) this.gc.current.dropDeadLetter(id)
    this.sync(cb)
  }

  /** Runs `cb` once everything submitted so far is durable. */
  sync (cb: Waiter): void {
    this.gc.current.wait(cb)
    this.gc.schedule()
  }

  /** The error of the last write while writes are failing, else null (for readiness). */
  get writeFailure (): Error | null {
    return this.reopener.writeFailure
  }

  // ---- flusher side (flush-side.ts) ------------------------------------------------

  readBatch (p: number, maxItems: number, maxBytes: number): Promise<ReadBatch> {
    return this.flushSide.readBatch(p, maxItems, maxBytes)
  }

  /** Items the upstream answered (handed to `settle`), cumulative: the intake's overload admission reads the upload rate from it. */
  answered = 0

  release (p: number): void {
    this.flushSide.release(p)
  }

  /**
   * Applies upstream results of partition p: deletes and dead letters, durably.
   * `sizes` are the raw item sizes as read.
   */
  settle (p: number, deletes: { s: number, size: number }[], dead: { s: number, raw: Buffer, reason: string }[]): Promise<void> {
    this.answered += deletes.length + dead.length
    return this.flushSide.settle(p, deletes, dead)
  }

  /** Ranges evicted and not yet acknowledged upstream (at most `max`). */
  pendingEvicted (max = 1000): EvictedRange[] {
    return this.evictions.pending(max)
  }

  /** Forgets evicted ranges the upstream acknowledged. */
  evictedReported (ranges: EvictedRange[]): Promise<void> {
    return this.flushSide.evictedReported(ranges)
  }

  /** The lowest seq the gateway still holds in p (the upstream `floors` value). */
  floor (p: number): number {
    return this.parts[p]!.head
  }

  /** The oldest buffered item of p (for its age), or null. */
  oldest (p: number): Promise<Buffer | null> {
    return this.flushSide.oldest(p)
  }

  // ---- status ---------------------------------------------------------------------

  get items (): number { return this.quota.items }
  get bytes (): number { return this.quota.bytes }
  get dlqCount (): number { return this.dlq.count }
  get dlqBytes (): number { return this.dlq.bytes }
  get full (): boolean { return !this.hasRoom(itemCost(0)) }

  partitionStats (): PartitionStats[] {
    return this.parts.map((s) => ({ p: s.p, depth: s.items, bytes: s.bytes, nextSeq: s.next, head: s.head, inFlight: s.inFlight, settling: s.settlingCount }))
  }

  /** Dead-letter records, oldest first (bounded). */
  deadLetters (limit = 100): Promise<DlqRecord[]> {
    return readDeadLetters(this.db, limit)
  }

  /** Waits for every submitted write, then closes LevelDB. Idempotent. */
  async close (): Promise<void> {
    if (this.closed) return
    this.dedup.stop()
    await this.gc.close(cycleAwaited)
    this.closed = true
    await this.db.close()
  }
}
