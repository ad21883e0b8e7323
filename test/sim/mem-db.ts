/**
 * The subset of the abstract-level API the gateway store calls (gateway/store/db.ts), in
 * memory, with every operation held until the simulation lets it complete. What a
 * completed write put there is "durable": a crash keeps exactly that (`snapshot`) and
 * drops every operation still held. Both durability modes are taken as durable once
 * written; power-loss semantics are tested against the real disk elsewhere.
 *
 * Reads see the data when they complete, iterators the data when they were made (LevelDB's
 * implicit snapshot). Only the first step of an async iteration is held: one interleaving
 * point per await of the store's code, not one per key.
 */

type Range = { gt?: string, gte?: string, lt?: string, lte?: string, limit?: number, reverse?: boolean }
export type Op = { kind: 'read' | 'write', run: () => void }
/** A write's operations in order; a null value deletes the key. */
export type Commit = Array<[string, Buffer | null]>

export class MemDb {
  readonly data: Map<string, Buffer>
  private sorted: string[] | null = null
  /** operations waiting for the simulation (when `hold` is on) */
  readonly held: Op[] = []
  /** off: every operation completes at once (store recovery, the checker) */
  hold = false
  /** a crashed database: nothing completes any more */
  dead = false
  status = 'open'
  /** the next write to complete fails (a disk error: nothing of it is written) */
  failNextWrite = false
  /** called with every write when it becomes durable */
  onCommit: ((c: Commit) => void) | null = null

  constructor (data?: Map<string, Buffer>) {
    this.data = data ?? new Map()
  }

  /** What is durable now (a crash leaves this). */
  snapshot (): Map<string, Buffer> {
    return new Map(this.data)
  }

  private keysSorted (): string[] {
    if (this.sorted === null) this.sorted = [...this.data.keys()].sort()
    return this.sorted
  }

  /** @internal */
  op<T> (kind: 'read' | 'write', fn: () => T): Promise<T> {
    if (this.dead) return new Promise<T>(() => {})
    return new Promise<T>((resolve, reject) => {
      const run = (): void => { try { resolve(fn()) } catch (e) { reject(e) } }
      if (!this.hold) { queueMicrotask(run); return }
      this.held.push({ kind, run })
    })
  }

  /** Completes held operation i (the simulation's step). */
  complete (i: number): void {
    const [o] = this.held.splice(i, 1)
    o?.run()
  }

  /** A crash: held operations never complete. */
  kill (): void {
    this.dead = true
    this.held.length = 0
  }

  private apply (c: Commit): void {
    for (const [k, v] of c) {
      if (v === null) {
        if (this.data.delete(k)) this.sorted = null
      } else {
        if (!this.data.has(k)) this.sorted = null
        this.data.set(k, v)
      }
    }
    this.onCommit?.(c)
  }

  async open (): Promise<void> { this.status = 'open' }
  async close (): Promise<void> { this.status = 'closed' }

  get (k: string): Promise<Buffer | undefined> {
    return this.op('read', () => this.data.get(k))
  }

  getMany (keys: string[]): Promise<Array<Buffer | undefined>> {
    return this.op('read', () => keys.map((k) => this.data.get(k)))
  }

  put (k: string, v: Buffer, _opts?: unknown): Promise<void> {
    return this.op('write', () => this.apply([[k, v]]))
  }

  batch (): MemBatch {
    return new MemBatch(this)
  }

  /** @internal */
  writeBatch (c: Commit): Promise<void> {
    return this.op('write', () => {
      if (this.failNextWrite) {
        this.failNextWrite = false
        throw Object.assign(new Error('IO error: No space left on device (simulated)'), { code: 'LEVEL_IO_ERROR' })
      }
      this.apply(c)
    })
  }

  private range (r: Range): Array<[string, Buffer]> {
    const keys = this.keysSorted()
    const out: Array<[string, Buffer]> = []
    const inRange = (k: string): boolean => !((r.gt !== undefined && k <= r.gt) || (r.gte !== undefined && k < r.gte) || (r.lt !== undefined && k >= r.lt) || (r.lte !== undefined && k > r.lte))
    // binary search for the first key at or above the lower bound
    const lower = r.gte ?? r.gt
    let lo = 0
    if (lower !== undefined) {
      let hi = keys.length
      while (lo < hi) { const mid = (lo + hi) >> 1; if (keys[mid]! < lower) lo = mid + 1; else hi = mid }
    }
    const limit = r.limit === undefined || r.limit < 0 ? Infinity : r.limit
    if (!r.reverse) {
      for (let i = lo; i < keys.length && out.length < limit; i++) {
        const k = keys[i]!
        if (r.lt !== undefined && k >= r.lt) break
        if (r.lte !== undefined && k > r.lte) break
        if (inRange(k)) out.push([k, this.data.get(k)!])
      }
    } else {
      for (let i = keys.length - 1; i >= lo && out.length < limit; i--) {
        const k = keys[i]!
        if (inRange(k)) out.push([k, this.data.get(k)!])
        else if ((r.gt !== undefined && k <= r.gt) || (r.gte !== undefined && k < r.gte)) break
      }
    }
    return out
  }

  iterator (r: Range = {}): MemIterator<[string, Buffer]> {
    const entries = this.range(r)
    return new MemIterator(this, entries)
  }

  keys (r: Range = {}): MemIterator<string> {
    return new MemIterator(this, this.range(r).map((e) => e[0]))
  }

  values (r: Range = {}): MemIterator<Buffer> {
    return new MemIterator(this, this.range(r).map((e) => e[1]))
  }
}

export class MemBatch {
  private readonly c: Commit = []
  constructor (private readonly db: MemDb) {}
  put (k: string, v: Buffer): this { this.c.push([k, v]); return this }
  del (k: string): this { this.c.push([k, null]); return this }
  get length (): number { return this.c.length }
  write (_opts?: unknown): Promise<void> { return this.db.writeBatch(this.c) }
  async close (): Promise<void> {}
}

export class MemIterator<T> {
  private i = 0
  private started = false
  constructor (private readonly db: MemDb, private readonly entries: T[]) {}

  all (): Promise<T[]> {
    return this.db.op('read', () => this.entries.slice(this.i))
  }

  async next (): Promise<T | undefined> {
    if (!this.started) {
      this.started = true
      await this.db.op('read', () => undefined)
    }
    return this.entries[this.i++]
  }

  async close (): Promise<void> {}

  async * [Symbol.asyncIterator] (): AsyncGenerator<T> {
    while (true) {
      const v = await this.next()
      if (v === undefined) return
      yield v
    }
  }
}
