/**
 * The gateway's durable buffer: a partitioned log in LevelDB (DESIGN.md section 5).
 *
 * Invariants
 * - Every write goes through one serial writer. A write cycle gathers everything that
 *   arrived since the previous one (intake items, dedup windows, dead letters, upstream
 *   deletes, evictions) into ONE chained batch together with the partition counters it
 *   changes: group commit. `durability=power` writes it with `sync: true` (fsync);
 *   `process` without (survives kill -9, not power loss). Callbacks run only after the
 *   batch is on disk; a failed batch fails its callbacks AND the cycle gathering behind it
 *   (whose dedup decisions may depend on the failed one), so nothing is acknowledged that
 *   is not stored.
 * - Sequence numbers are allocated in memory, never rolled back, and the counter written
 *   with each batch is at least every seq in it: a seq is never reused, also after every
 *   item was deleted and the process restarted. (epoch, partition, seq) names an item
 *   forever; the epoch is a random id made when the store is created.
 * - `partitions` is recorded at creation; opening with another value is a ConfigError.
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
 * Key layout: keys.ts.
 */
import { EventEmitter } from 'node:events'
import { mkdir } from 'node:fs/promises'
import { Level } from 'level'
import type { Logger } from 'pino'
import { ConfigError, decodeUntrusted, encodeCbor, scanCbor, StoreError, type EvictedRange } from '../../protocol/index.ts'
import { DedupWindow } from './dedup.ts'
import { K, seqOfItemKey } from './keys.ts'
import { ITEM_OVERHEAD, readCounter, recover, type Partition, type Recovered } from './recover.ts'

export { DedupWindow, DEDUP_WINDOW } from './dedup.ts'

export type StoreConfig = {
  dataDir: string
  partitions: number
  durability: 'process' | 'power'
  maxBufferItems: number
  maxBufferBytes: number
  fullPolicy: 'block' | 'drop-oldest'
}

export type DlqRecord = {
  kind: 'payload' | 'item' | 'too-old'
  reason: string
  at: number
  raw: Uint8Array
  device?: string
  topic?: string
  p?: number
  s?: number
}

/** `settling`: items answered upstream whose delete is not durable yet (part of `depth`). */
export type PartitionStats = { p: number, depth: number, bytes: number, nextSeq: number, head: number, inFlight: boolean, settling: number }

export type ReadBatch = { p: number, seqs: number[], raws: Buffer[], bytes: number }

/** Told once its cycle is durable (null) or failed. An object form avoids a closure per reading. */
export type Waiter = ((err: Error | null) => void) | { settled: (err: Error | null) => void }

/** An item to append: the intake's per-reading entry carries p, s and its wire bytes itself. */
export type Append = { p: number, s: number, raw: Buffer, settled: (err: Error | null) => void }

function tell (w: Waiter, err: Error | null): void {
  if (typeof w === 'function') w(err)
  else w.settled(err)
}

type Cycle = {
  appends: Append[]
  dlq: DlqRecord[]
  devices: Map<string, DedupWindow>
  deletes: { p: number, s: number, size: number }[]
  deadItems: { p: number, s: number, size: number, raw: Buffer, reason: string }[]
  evictedDone: EvictedRange[]
  quarantine: { key: string, raw: Buffer, reason: string }[]
  /** dead-letter record ids to delete (purged, or replayed by appends of this same cycle) */
  dlqDrops: number[]
  waiters: Waiter[]
}


const newCycle = (): Cycle => ({ appends: [], dlq: [], devices: new Map(), deletes: [], deadItems: [], evictedDone: [], quarantine: [], dlqDrops: [], waiters: [] })

export type StoreEvents = {
  appended: [partitions: Set<number>]
  space: []
  evicted: [ranges: EvictedRange[], items: number]
  writeError: [err: Error]
  cycle: [info: { ops: number, items: number, ms: number }]
  floor: [p: number, floor: number]
}

export class Store extends EventEmitter<StoreEvents> {
  readonly db: Level<string, Buffer>
  readonly epoch: string
  readonly partitions: number
  private readonly parts: Partition[]
  private current: Cycle = newCycle()
  private writing: Promise<void> | null = null
  private scheduled = false
  private closed = false
  private reservedItems = 0
  private reservedBytes = 0
  private totalItems = 0
  private totalBytes = 0
  private dlqNext: number
  private dlqCountValue: number
  private quarantineNext = 0
  private evicted: EvictedRange[]
  private evictingParts = new Set<number>()
  private evictWanted = false
  /** the last write failed: reopen LevelDB before the next (it keeps e.g. ENOSPC sticky) */
  private failure: Error | null = null
  private reopenDelayMs = 0
  readonly log: Logger

  private constructor (readonly config: StoreConfig, db: Level<string, Buffer>, r: Recovered, log: Logger) {
    super()
    this.db = db
    this.epoch = r.epoch
    this.partitions = r.parts.length
    this.parts = r.parts
    this.dlqNext = r.dlq[0]
    this.dlqCountValue = r.dlq[1]
    this.evicted = r.evicted
    this.quarantineNext = r.quarantineNext
    this.log = log
    for (const p of r.parts) { this.totalItems += p.items; this.totalBytes += p.bytes }
  }

  static async open (config: StoreConfig, logger: Logger): Promise<Store> {
    const log = logger.child({ component: 'store' })
    await mkdir(config.dataDir, { recursive: true })
    const db = new Level<string, Buffer>(config.dataDir, { keyEncoding: 'utf8', valueEncoding: 'buffer' })
    try {
      await db.open()
    } catch (err) {
      throw new StoreError(`cannot open the store at ${config.dataDir}: ${(err as Error).message} (is another gateway using this --data-dir?)`, { cause: err, retryable: false })
    }
    try {
      const store = new Store(config, db, await recover(config, db, log), log)
      log.info({ epoch: store.epoch, partitions: store.partitions, items: store.totalItems, bytes: store.totalBytes, dlq: store.dlqCountValue, evictedRanges: store.evicted.length }, 'store recovered')
      return store
    } catch (err) {
      await db.close().catch(() => {})
      throw err
    }
  }

  // ---- intake side ----------------------------------------------------------------

  /** Allocates the next seq of partition p. Never reused, even if the write then fails. */
  nextSeq (p: number): number {
    return this.parts[p]!.next++
  }

  /** The seq the next append to p will get. */
  peekNext (p: number): number {
    return this.parts[p]!.next
  }

  /** True when one more item of `bytes` fits the quota (always true under drop-oldest). */
  hasRoom (bytes: number): boolean {
    if (this.config.fullPolicy === 'drop-oldest') return true
    return this.totalItems + this.reservedItems < this.config.maxBufferItems &&
      this.totalBytes + this.reservedBytes + bytes + ITEM_OVERHEAD <= this.config.maxBufferBytes
  }

  /** Appends an item (its wire CBOR) to the current cycle; `cb` runs once it is durable. */
  append (a: Append): void {
    this.current.appends.push(a)
    this.reservedItems++
    this.reservedBytes += a.raw.length + ITEM_OVERHEAD
    this.schedule()
  }

  /** Records a changed dedup window in the current cycle. */
  saveDedup (device: string, w: DedupWindow): void {
    if (!this.current.devices.has(device)) {
      this.current.devices.set(device, w)
      w.pending++
    }
    this.schedule()
  }

  deadLetter (rec: DlqRecord, cb: Waiter): void {
    this.current.dlq.push(rec)
    this.join(cb)
  }

  /**
   * Deletes dead-letter records (existing ids, each once) in the current cycle: appends
   * made in the same synchronous turn land in the same atomic batch (dlq replay).
   */
  dropDeadLetters (ids: number[], cb: Waiter): void {
    for (const id of ids) this.current.dlqDrops.push(id)
    this.join(cb)
  }

  /** Runs `cb` once everything submitted so far is durable. */
  sync (cb: Waiter): void {
    this.join(cb)
  }

  async loadDedup (device: string): Promise<DedupWindow | null> {
    const buf = await this.db.get(K.dedup(device))
    if (buf === undefined) return null
    try {
      return DedupWindow.decode(buf)
    } catch (err) {
      this.log.warn({ device, err: (err as Error).message }, 'dedup window unreadable; quarantined, starting a new window')
      this.current.quarantine.push({ key: K.dedup(device), raw: buf, reason: (err as Error).message })
      this.schedule()
      return null
    }
  }

  private join (cb: Waiter): void {
    this.current.waiters.push(cb)
    this.schedule()
  }

  private schedule (): void {
    if (this.scheduled || this.writing || this.closed) return
    this.scheduled = true
    // setImmediate: let every socket read of this I/O phase add to the cycle first
    setImmediate(() => { this.scheduled = false; this.runCycle() })
  }

  private runCycle (): void {
    if (this.writing) return
    if (this.failure && !this.closed) {
      this.writing = this.reopen().finally(() => {
        this.writing = null
        this.schedule()
      })
      return
    }
    const c = this.current
    if (c.waiters.length === 0 && c.appends.length === 0 && c.devices.size === 0 && c.deletes.length === 0 &&
      c.deadItems.length === 0 && c.evictedDone.length === 0 && c.quarantine.length === 0 && !this.evictWanted) return
    this.evictWanted = false
    this.current = newCycle()
    this.writing = this.writeCycle(c).finally(() => {
      this.writing = null
      if (!this.closed || this.current.waiters.length > 0 || this.current.appends.length > 0) this.schedule()
    })
  }

  private async writeCycle (c: Cycle): Promise<void> {
    const t0 = performance.now()
    const appendedItems = c.appends.length
    let appendedBytes = 0
    for (const a of c.appends) appendedBytes += a.raw.length + ITEM_OVERHEAD
    let err: Error | null = null
    let evictedRanges: EvictedRange[] = []
    let evictedCount = 0
    const delta = new Map<number, { items: number, bytes: number }>()
    const d = (p: number): { items: number, bytes: number } => {
      let x = delta.get(p)
      if (!x) { x = { items: 0, bytes: 0 }; delta.set(p, x) }
      return x
    }
    try {
      if (this.config.fullPolicy === 'drop-oldest') {
        const ev = await this.planEviction(c, appendedItems, appendedBytes)
        evictedRanges = ev.ranges
        evictedCount = ev.deletes.length
        for (const x of ev.deletes) c.deletes.push(x)
      }
      const b = this.db.batch()
      for (const a of c.appends) {
        b.put(K.item(a.p, a.s), a.raw)
        const x = d(a.p); x.items++; x.bytes += a.raw.length + ITEM_OVERHEAD
      }
      for (const x of c.deletes) {
        b.del(K.item(x.p, x.s))
        const y = d(x.p); y.items--; y.bytes -= x.size
      }
      let dlqAdded = c.dlq.length - c.dlqDrops.length
      for (const id of c.dlqDrops) b.del(K.dlq(id))
      for (const x of c.deadItems) {
        b.del(K.item(x.p, x.s))
        const y = d(x.p); y.items--; y.bytes -= x.size
        c.dlq.push({ kind: 'item', reason: x.reason, at: Date.now(), raw: x.raw, p: x.p, s: x.s })
        dlqAdded++
      }
      let dlqId = this.dlqNext
      for (const r of c.dlq) b.put(K.dlq(dlqId++), encodeCbor({ ...r, at: r.at > 0xffffffff ? BigInt(r.at) : r.at, raw: Buffer.from(r.raw) }))
      if (c.dlq.length || c.dlqDrops.length) b.put(K.dlqMeta, encodeCbor([dlqId, this.dlqCountValue + dlqAdded]))
      for (const [dev, w] of c.devices) b.put(K.dedup(dev), w.encode())
      let qId = this.quarantineNext
      for (const q of c.quarantine) {
        b.del(q.key)
        b.put(K.quarantine(qId++), encodeCbor({ key: q.key, reason: q.reason, raw: q.raw }))
      }
      for (const r of this.mergeEvicted(evictedRanges)) b.put(K.evicted(r[0], r[1]), encodeCbor(r[2]))
      for (const r of c.evictedDone) b.del(K.evicted(r[0], r[1]))
      for (const [p, x] of delta) {
        const s = this.parts[p]!
        b.put(K.counter(p), encodeCbor([s.next, s.items + x.items, s.bytes + x.bytes]))
      }
      await b.write({ sync: this.config.durability === 'power' })
      // durable: apply to memory
      for (const [p, x] of delta) {
        const s = this.parts[p]!
        s.items += x.items; s.bytes += x.bytes
        this.totalItems += x.items; this.totalBytes += x.bytes
      }
      for (const a of c.appends) { const s = this.parts[a.p]!; if (a.s >= s.committedNext) s.committedNext = a.s + 1 }
      for (const x of c.deletes) this.advanceHead(x.p, x.s)
      for (const x of c.deadItems) this.advanceHead(x.p, x.s)
      this.dlqNext = dlqId
      this.dlqCountValue += dlqAdded
      this.quarantineNext = qId
      const done = new Set(c.evictedDone.map((r) => `${r[0]}:${r[1]}`))
      if (done.size) this.evicted = this.evicted.filter((r) => !done.has(`${r[0]}:${r[1]}`))
    } catch (e) {
      err = e instanceof StoreError ? e : new StoreError(`store write failed: ${(e as Error).message}`, { cause: e })
      // the evicted ranges were merged into memory before the write: take them back
      if (evictedRanges.length) this.evicted = this.evicted.filter((r) => !evictedRanges.includes(r))
    } finally {
      this.forgetPending(c)
      this.evictingParts.clear()
      this.reservedItems -= appendedItems
      this.reservedBytes -= appendedBytes
      for (const w of c.devices.values()) w.pending--
    }
    if (err) {
      // the cycle gathering behind this one may hold dedup decisions that relied on it
      const next = this.current
      this.current = newCycle()
      this.forgetPending(next)
      this.reservedItems -= next.appends.length
      for (const a of next.appends) this.reservedBytes -= a.raw.length + ITEM_OVERHEAD
      for (const w of next.devices.values()) w.pending--
      this.log.error({ err: err.message, items: appendedItems, failedBehind: next.waiters.length + next.appends.length }, 'store write failed; nothing in it is acknowledged')
      this.failure = err
      this.emit('writeError', err)
      for (const a of c.appends) a.settled(err)
      for (const w of c.waiters) tell(w, err)
      for (const a of next.appends) a.settled(err)
      for (const w of next.waiters) tell(w, err)
      return
    }
    if (this.reopenDelayMs) this.log.info('store writes again')
    this.reopenDelayMs = 0
    this.emit('cycle', { ops: c.waiters.length + appendedItems, items: appendedItems, ms: performance.now() - t0 })
    if (evictedCount) this.emit('evicted', evictedRanges, evictedCount)
    // appends and waiters were queued in arrival order within each list; the intake orders
    // per client itself, so the two lists need no interleaving
    for (const a of c.appends) a.settled(null)
    for (const w of c.waiters) tell(w, null)
    if (appendedItems) {
      const ps = new Set<number>()
      for (const a of c.appends) ps.add(a.p)
      this.emit('appended', ps)
    }
    if (c.deletes.length || c.deadItems.length) {
      this.emit('space')
      for (const p of new Set([...c.deletes.map((x) => x.p), ...c.deadItems.map((x) => x.p)])) this.emit('floor', p, this.parts[p]!.head)
    }
  }

  /** The cycle's deletes and dead letters are written (or failed, and will be read again). */
  private forgetPending (c: Cycle): void {
    for (const x of c.deletes) this.forget(x.p, x.s)
    for (const x of c.deadItems) this.forget(x.p, x.s)
  }

  private forget (p: number, s: number): void {
    const part = this.parts[p]!
    // a read under way may have taken its snapshot before this write: it must still skip s
    if (part.inFlightTo === Infinity) part.forgetAfterRead.push(s)
    else part.pendingDel.delete(s)
  }

  private advanceHead (p: number, s: number): void {
    const part = this.parts[p]!
    if (s === part.head) part.head = s + 1
  }

  /** Adds new ranges to memory, extending a range that ends right before; returns ranges to (re)write. */
  private mergeEvicted (ranges: EvictedRange[]): EvictedRange[] {
    const out: EvictedRange[] = []
    for (const r of ranges) {
      const prev = this.evicted.findLast((e) => e[0] === r[0])
      if (prev && prev[2] + 1 === r[1]) { prev[2] = r[2]; out.push(prev) } else { this.evicted.push(r); out.push(r) }
    }
    return out
  }

  /**
   * drop-oldest: picks items to evict so the buffer fits the quota after this cycle, from
   * the deepest partition's oldest end, never items the flusher holds (they are on the wire).
   */
  private async planEviction (c: Cycle, addItems: number, addBytes: number): Promise<{ deletes: { p: number, s: number, size: number }[], ranges: EvictedRange[] }> {
    const max = this.config
    let items = this.totalItems + addItems - c.deletes.length - c.deadItems.length
    let bytes = this.totalBytes + addBytes
    for (const x of c.deletes) bytes -= x.size
    for (const x of c.deadItems) bytes -= x.size
    const over = (): boolean => items > max.maxBufferItems || bytes > max.maxBufferBytes
    const got: { p: number, s: number, size: number }[] = []
    const depth = this.parts.map((x) => x.items)
    const cursor = new Map<number, number>()
    const exhausted = new Set<number>()
    while (over() && exhausted.size < this.partitions) {
      let best = -1
      for (let p = 0; p < this.partitions; p++) {
        if (!exhausted.has(p) && (best < 0 || depth[p]! > depth[best]!)) best = p
      }
      const part = this.parts[best]!
      const from = cursor.get(best) ?? Math.max(part.head, part.inFlightTo + 1)
      if (!Number.isFinite(from) || depth[best] === 0) { exhausted.add(best); continue }
      this.evictingParts.add(best)
      let n = 0
      let last = from
      const limit = Math.min(Math.max(items - max.maxBufferItems, 0) + 64, 4096)
      for await (const [k, v] of this.db.iterator({ gte: K.item(best, from), lt: K.itemEnd(best), limit })) {
        const size = v.length + ITEM_OVERHEAD
        last = seqOfItemKey(k)
        if (part.pendingDel.has(last)) continue // answered upstream, its delete is queued
        got.push({ p: best, s: last, size })
        items--; bytes -= size; depth[best]!--; n++
        if (!over()) break
      }
      if (n === 0) exhausted.add(best)
      else cursor.set(best, last + 1)
    }
    // the flusher may have started a read meanwhile: never evict what it holds (it is on the wire)
    const deletes: { p: number, s: number, size: number }[] = []
    const ranges: EvictedRange[] = []
    for (const g of got) {
      if (g.s <= this.parts[g.p]!.inFlightTo || this.parts[g.p]!.pendingDel.has(g.s)) continue
      deletes.push(g)
      const r = ranges.findLast((x) => x[0] === g.p)
      if (r && r[2] + 1 === g.s) r[2] = g.s
      else ranges.push([g.p, g.s, g.s])
    }
    if (deletes.length) this.log.warn({ items: deletes.length, ranges }, 'buffer full: evicted the oldest items (fullPolicy=drop-oldest)')
    return { deletes, ranges }
  }

  /**
   * After a failed write: wait (backoff 0.2 .. 5 s), close and reopen LevelDB (which keeps
   * an error like ENOSPC sticky until reopened), and re-read the partition counters: a
   * batch reported failed may still have reached the log and be replayed on open.
   */
  private async reopen (): Promise<void> {
    this.reopenDelayMs = Math.min(5000, Math.max(200, this.reopenDelayMs * 2))
    await new Promise((r) => setTimeout(r, this.reopenDelayMs))
    if (this.closed) return
    try {
      await this.db.close()
      await this.db.open()
      for (let p = 0; p < this.partitions; p++) {
        const c = readCounter(await this.db.get(K.counter(p)))
        if (!c) continue
        const part = this.parts[p]!
        this.totalItems += c[1] - part.items
        this.totalBytes += c[2] - part.bytes
        part.items = c[1]
        part.bytes = c[2]
        part.next = Math.max(part.next, c[0])
        part.committedNext = Math.max(part.committedNext, c[0])
      }
      this.failure = null
      this.log.warn({ retryInMs: this.reopenDelayMs }, 'store reopened after a failed write; retrying writes')
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'store reopen failed; will retry')
    }
  }

  /** The error of the last write while writes are failing, else null (for readiness). */
  get writeFailure (): Error | null {
    return this.reopenDelayMs > 0 ? this.failure ?? new StoreError('store recovering from a failed write') : null
  }

  // ---- flusher side ---------------------------------------------------------------

  /**
   * Reads up to maxItems/maxBytes items of partition p from its head and marks them held
   * by the flusher until `release(p)`. Unreadable items are moved to the dead-letter store.
   */
  async readBatch (p: number, maxItems: number, maxBytes: number): Promise<ReadBatch> {
    const part = this.parts[p]!
    while (this.evictingParts.has(p) && this.writing) await this.writing
    part.inFlightTo = Infinity
    // taken before the iterator: an empty read then proves nothing below it is held
    const committedNext = part.committedNext
    const seqs: number[] = []
    const raws: Buffer[] = []
    let bytes = 0
    let firstHeld = -1
    try {
      // one native round trip for the whole batch (bounded by maxItems): under load every
      // extra iterator step waits a full event-loop turn behind the intake
      // items whose delete is still queued are read too (and skipped): ask for that many more
      const range = { gte: K.item(p, part.head), lt: K.itemEnd(p), limit: maxItems + part.pendingDel.size, highWaterMarkBytes: Math.max(maxBytes * 2, 64 * 1024) }
      const entries: Array<[string, Buffer]> = await this.db.iterator(range).all()
      if (entries.length) firstHeld = seqOfItemKey(entries[0]![0])
      for (const [k, v] of entries) {
        const s = seqOfItemKey(k)
        if (part.pendingDel.has(s)) continue
        if (seqs.length >= maxItems) break
        try {
          scanCbor(v, { maxDepth: 4 })
        } catch (err) {
          this.log.error({ partition: p, seq: s, err: (err as Error).message }, 'buffered item unreadable; moved to the dead-letter store')
          this.current.deadItems.push({ p, s, size: v.length + ITEM_OVERHEAD, raw: v, reason: `unreadable item in store: ${(err as Error).message}` })
          part.pendingDel.add(s)
          this.schedule()
          continue
        }
        if (raws.length > 0 && bytes + v.length > maxBytes) break
        seqs.push(s)
        raws.push(v)
        bytes += v.length
      }
    } finally {
      part.inFlightTo = seqs.length ? seqs[seqs.length - 1]! : -1
      for (const s of part.forgetAfterRead) part.pendingDel.delete(s)
      part.forgetAfterRead.length = 0
    }
    // the floor: the first item still on disk (everything below it is durably gone), even
    // when its delete is queued; with nothing on disk, all that was committed before the
    // read. Never below the head: deletes that landed during the read may have moved it.
    const head = Math.max(part.head, firstHeld >= 0 ? firstHeld : committedNext)
    if (head !== part.head) {
      part.head = head
      this.emit('floor', p, head)
    }
    return { p, seqs, raws, bytes }
  }

  release (p: number): void {
    this.parts[p]!.inFlightTo = -1
    // drop-oldest: items that were on the wire when a write wanted to evict them may go now
    if (this.config.fullPolicy === 'drop-oldest' && (this.totalItems > this.config.maxBufferItems || this.totalBytes > this.config.maxBufferBytes)) {
      this.evictWanted = true
      this.schedule()
    }
  }

  /**
   * Applies upstream results of partition p: deletes and dead letters, durably.
   * `sizes` are the raw item sizes as read.
   */
  settle (p: number, deletes: { s: number, size: number }[], dead: { s: number, raw: Buffer, reason: string }[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const pending = this.parts[p]!.pendingDel
      for (const x of deletes) { this.current.deletes.push({ p, s: x.s, size: x.size + ITEM_OVERHEAD }); pending.add(x.s) }
      for (const x of dead) { this.current.deadItems.push({ p, s: x.s, size: x.raw.length + ITEM_OVERHEAD, raw: x.raw, reason: x.reason }); pending.add(x.s) }
      this.join((err) => err ? reject(err) : resolve())
    })
  }

  /** Ranges evicted and not yet acknowledged upstream (at most `max`). */
  pendingEvicted (max = 1000): EvictedRange[] {
    return this.evicted.slice(0, max).map((r) => [...r] as EvictedRange)
  }

  /** Forgets evicted ranges the upstream acknowledged. */
  evictedReported (ranges: EvictedRange[]): Promise<void> {
    if (ranges.length === 0) return Promise.resolve()
    return new Promise((resolve, reject) => {
      for (const r of ranges) {
        // a range may have grown since it was reported: only drop it if unchanged
        const cur = this.evicted.find((e) => e[0] === r[0] && e[1] === r[1])
        if (cur && cur[2] === r[2]) this.current.evictedDone.push(cur)
      }
      this.join((err) => err ? reject(err) : resolve())
    })
  }

  /** The lowest seq the gateway still holds in p (the upstream `floors` value). */
  floor (p: number): number {
    return this.parts[p]!.head
  }

  // ---- status ---------------------------------------------------------------------

  get items (): number { return this.totalItems }
  get bytes (): number { return this.totalBytes }
  get dlqCount (): number { return this.dlqCountValue }
  get full (): boolean { return !this.hasRoom(0) }

  partitionStats (): PartitionStats[] {
    return this.parts.map((s, p) => ({ p, depth: s.items, bytes: s.bytes, nextSeq: s.next, head: s.head, inFlight: s.inFlightTo >= 0, settling: s.pendingDel.size }))
  }

  /** The oldest buffered item of p (for its age), or null. */
  async oldest (p: number): Promise<Buffer | null> {
    const r = await this.db.values({ gte: K.item(p, this.parts[p]!.head), lt: K.itemEnd(p), limit: 1 }).all()
    return r[0] ?? null
  }

  /** Dead-letter records, oldest first (bounded). */
  async deadLetters (limit = 100): Promise<DlqRecord[]> {
    const out: DlqRecord[] = []
    for await (const v of this.db.values({ ...K.range('x!'), limit })) out.push(decodeUntrusted(v, { maxDepth: 3 }) as DlqRecord)
    return out
  }

  /** Waits for every submitted write, then closes LevelDB. Idempotent. */
  async close (): Promise<void> {
    if (this.closed) return
    while (this.writing || this.scheduled || this.current.waiters.length || this.current.appends.length) {
      if (this.writing) await this.writing
      else if ((this.current.waiters.length || this.current.appends.length) && !this.scheduled) this.runCycle()
      else await new Promise((r) => setImmediate(r))
    }
    this.closed = true
    await this.db.close()
  }
}
