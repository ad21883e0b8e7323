/**
 * Dead-letter tools (`DeadLetterTools`): list, show, export, replay, purge, over the
 * records the store keeps (store/dead-letters.ts, whose header maps where dead letters
 * live). One implementation serves the `gateway dlq ...` CLI on a stopped gateway's data
 * dir and the admin API of a running gateway (the store's LevelDB lock makes the two
 * exclusive).
 *
 * Replay is exactly-once: the re-queued items (store appends) and the deletion of their
 * dead-letter records go into the same group-commit cycle, i.e. one atomic LevelDB batch.
 * After a crash either both happened or neither; a record is never both queued and kept.
 * Actions run one at a time (a purge and a replay never race over the same records).
 */
import type { Logger } from 'pino'
import { encodeItemFast, partitionOf, ValidationError } from '../../protocol/index.ts'
import { readDeadLetter, reasonSummary, scanDeadLetters, type DeadLetter, type DlqFilter } from '../store/dlq-reader.ts'
import type { Level } from 'level'
import { itemCost, type Store } from '../store/index.ts'
import { isEmptyFilter } from './filter.ts'
import { revalidate, view, viewJson, type DeadLetterView, type Requeue } from './replay.ts'

export { parseFilter, parseTime, isEmptyFilter, FILTER_KEYS } from './filter.ts'
export { view, viewJson, revalidate, type DeadLetterView } from './replay.ts'
export { decodeForView, jsonSafe } from './render.ts'

export type DlqAction = 'list' | 'show' | 'export' | 'replay' | 'purge'

/** Records per commit cycle during replay and purge. */
const CHUNK = 256

/**
 * A dry run says what it would do (`wouldReplay`, `wouldPurge`) and leaves `replayed` and
 * `purged` at 0: a dry run that answered `"purged": 4` read as if four records were gone.
 */
export type ReplayResult = {
  matched: number
  replayed: number
  /** with dryRun: how many a real run would queue again (absent otherwise) */
  wouldReplay?: number
  /** records that still fail validation (they stay), first 20 */
  invalid: { id: number, reason: string }[]
  invalidCount: number
  /** stopped early: the buffer quota is reached (fullPolicy=block) */
  bufferFull: boolean
  dryRun: boolean
}

export type PurgeResult = { matched: number, purged: number, /** with dryRun: how many a real run would delete */ wouldPurge?: number, dryRun: boolean }

/** What list, show and export need: a LevelDB handle (a stopped gateway's, opened directly). */
export type DlqReadOnly = { readonly db: Level<string, Buffer>, readonly dlqCount: number }
type Writable = Pick<Store, 'db' | 'dlqCount' | 'partitions' | 'hasRoom' | 'nextSeq' | 'append' | 'dropDeadLetters'>

export class DeadLetterTools {
  private queue: Promise<unknown> = Promise.resolve()
  private readonly log: Logger

  /**
   * `store` is the open store (needed to replay and purge); `onAction` counts actions
   * (the running gateway's /metrics).
   */
  constructor (
    private readonly store: Writable | DlqReadOnly,
    private readonly opts: { maxPayloadBytes: number, via: 'admin' | 'cli' },
    logger: Logger,
    private readonly onAction: (action: DlqAction, items: number) => void = () => {}
  ) {
    this.log = logger.child({ component: 'dlq' })
  }

  get count (): number { return this.store.dlqCount }

  private get writer (): Writable {
    if (!('dropDeadLetters' in this.store)) throw new Error('opened read-only: replay and purge need the store (Store.open)')
    return this.store
  }

  /** A page of records, oldest first (or `newest` first); `next` is the `afterId` of the next page. */
  async list (filter: DlqFilter, page: { afterId?: number, limit?: number, newest?: boolean } = {}): Promise<{ total: number, items: DeadLetterView[], next: number | null }> {
    const limit = Math.max(1, Math.min(page.limit ?? 100, 1000))
    const items: DeadLetterView[] = []
    for await (const r of scanDeadLetters(this.store.db, filter, { afterId: page.afterId, limit: limit + 1, newest: page.newest })) items.push(view(r, false))
    const more = items.length > limit
    if (more) items.length = limit
    this.done('list', items.length, { filter })
    return { total: this.store.dlqCount, items, next: more ? items[items.length - 1]!.id : null }
  }

  async show (id: number): Promise<DeadLetterView | null> {
    const r = await readDeadLetter(this.store.db, id)
    this.done('show', r ? 1 : 0, { id })
    return r ? view(r, true) : null
  }

  /** JSON lines, one record each (with its raw bytes in base64); a record that cannot be shown is a line saying so. */
  async * export (filter: DlqFilter): AsyncGenerator<string> {
    let n = 0
    try {
      for await (const r of scanDeadLetters(this.store.db, filter)) {
        n++
        yield viewJson(r, true) + '\n'
      }
    } finally {
      this.done('export', n, { filter })
    }
  }

  summary (): ReturnType<typeof reasonSummary> {
    return reasonSummary(this.store.db)
  }

  /** Re-validates matching records and queues the valid ones again (module header). */
  replay (filter: DlqFilter, opts: { dryRun?: boolean } = {}): Promise<ReplayResult> {
    return this.serial(async () => {
      const res: ReplayResult = { matched: 0, replayed: 0, ...(opts.dryRun === true ? { wouldReplay: 0 } : {}), invalid: [], invalidCount: 0, bufferFull: false, dryRun: opts.dryRun === true }
      let chunk: { rec: DeadLetter, item: Requeue }[] = []
      const flush = async (): Promise<void> => {
        if (chunk.length === 0 || res.bufferFull) return
        if (!res.dryRun) {
          const n = await this.requeue(chunk)
          res.replayed += n
          if (n < chunk.length) res.bufferFull = true
        } else res.wouldReplay! += chunk.length
        chunk = []
      }
      for await (const rec of scanDeadLetters(this.store.db, filter)) {
        res.matched++
        const v = revalidate(rec, this.opts.maxPayloadBytes)
        if (!v.ok) {
          res.invalidCount++
          if (res.invalid.length < 20) res.invalid.push({ id: rec.id, reason: v.reason })
          continue
        }
        chunk.push({ rec, item: v.item })
        if (chunk.length >= CHUNK) await flush()
        if (res.bufferFull) break
      }
      await flush()
      this.done('replay', res.replayed, { filter, matched: res.matched, replayed: res.replayed, ...(res.dryRun ? { wouldReplay: res.wouldReplay } : {}), stillInvalid: res.invalidCount, bufferFull: res.bufferFull, dryRun: res.dryRun })
      return res
    })
  }

  /** Deletes matching records; an empty filter needs `all` (no accidental wipe). */
  purge (filter: DlqFilter, opts: { dryRun?: boolean, all?: boolean } = {}): Promise<PurgeResult> {
    if (isEmptyFilter(filter) && !opts.all) return Promise.reject(new ValidationError('filter', 'purge needs a filter (device, reason, kind, since, until, id) or all'))
    return this.serial(async () => {
      const res: PurgeResult = { matched: 0, purged: 0, ...(opts.dryRun === true ? { wouldPurge: 0 } : {}), dryRun: opts.dryRun === true }
      let ids: number[] = []
      const flush = async (): Promise<void> => {
        if (ids.length === 0) return
        if (!res.dryRun) {
          await new Promise<void>((resolve, reject) => this.writer.dropDeadLetters(ids, (err) => err ? reject(err) : resolve()))
          res.purged += ids.length
        } else res.wouldPurge! += ids.length
        ids = []
      }
      for await (const rec of scanDeadLetters(this.store.db, filter)) {
        res.matched++
        ids.push(rec.id)
        if (ids.length >= CHUNK) await flush()
      }
      await flush()
      this.done('purge', res.purged, { filter, matched: res.matched, purged: res.purged, ...(res.dryRun ? { wouldPurge: res.wouldPurge } : {}), dryRun: res.dryRun })
      return res
    })
  }

  /**
   * Appends the items and drops their records in one synchronous turn (one cycle, one
   * atomic batch); returns how many fit the buffer quota.
   */
  private requeue (chunk: { rec: DeadLetter, item: Requeue }[]): Promise<number> {
    const store = this.writer
    return new Promise((resolve, reject) => {
      const ids: number[] = []
      for (const { rec, item } of chunk) {
        const p = partitionOf(item.device, store.partitions)
        // the item is encoded once it has a seq: 256 bytes is the allowance asked for before
        if (!store.hasRoom(itemCost(256))) break
        const s = store.nextSeq(p)
        const raw = encodeItemFast(p, s, item.device, item.seq, item.boot, item.ts, item.rx, item.values)
        store.append({ p, s, raw, settled: () => {} })
        ids.push(rec.id)
      }
      // the appends above are in the current cycle: this waiter is told when it is durable
      store.dropDeadLetters(ids, (err) => err ? reject(err) : resolve(ids.length))
    })
  }

  private serial<T> (fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn)
    this.queue = run.catch(() => {})
    return run
  }

  private done (action: DlqAction, items: number, fields: Record<string, unknown>): void {
    this.onAction(action, items)
    const f = fields.filter as DlqFilter | undefined
    const level = action === 'replay' || action === 'purge' ? 'info' : 'debug'
    this.log[level]({ action, via: this.opts.via, items, ...fields, ...(f ? { filter: f } : {}) }, `dead letters: ${action}`)
  }
}
