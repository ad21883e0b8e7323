/**
 * The dead-letter store: dead-letter records and quarantine on disk (`DeadLetterStore`).
 *
 * Where dead letters live (this header is the one map of them):
 *   store/dead-letters.ts  records on disk: their ids, count, bytes and quota, and the
 *                          quarantine (`DeadLetterStore`, owned by the store)
 *   store/index.ts         `Store.deadLetter`: the intake's invalid and too-old readings
 *   store/flush-side.ts    items the upstream rejected and items unreadable in the store
 *   store/cycle.ts         a dead letter joins the current cycle (`Cycle.deadLetter`,
 *                          `deadItem`, `dropDeadLetter`); store/writer.ts writes it in the
 *                          cycle's batch
 *   store/dlq-reader.ts    reads and filters records (read-only, also on a stopped gateway)
 *   store/recover.ts       recounts the records when their counter cannot be trusted
 *   dlq/                   the operator's tools: list, show, export, replay, purge
 *                          (`DeadLetterTools`), for cli/dlq.ts and admin/dlq-routes.ts
 *
 * A dead-letter record (`x!` keys) keeps what could not be delivered with its reason and
 * the raw bytes: invalid payloads, readings older than the dedup window, items the ingest
 * rejected or that became unreadable in the store. A quarantined entry (`q!` keys) is a
 * store entry that could not be read at all (e.g. a corrupt dedup window), moved aside so
 * startup never crash-loops on it.
 *
 * `m!dlq` holds [nextId, count, bytes] and is written in the same batch as the records it
 * counts; recovery recounts when it is unreadable or from an older layout (recover.ts).
 *
 * Quota (`maxDlqItems`/`maxDlqBytes`, bytes = record plus key): a cycle whose records
 * would pass it drops the oldest records (lowest ids; new ones too if they alone do not
 * fit) in the same batch: counted (`gateway_dlq_dropped_total`) and logged, never silent.
 */
import { decodeUntrusted, encodeCbor } from '../../protocol/index.ts'
import type { StoreConfig } from './config.ts'
import type { Batch, Db } from './db.ts'
import { K } from './keys.ts'

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

export type Quarantined = { key: string, raw: Buffer, reason: string }

/** Bytes a record costs against maxDlqBytes besides its value: its key. */
const KEY_BYTES = K.dlq(0).length

/** What one cycle writes: encoded new records, and what the quota drops. */
export type DlqPlan = {
  encoded: Buffer[]
  /** existing records dropped (oldest first) */
  dropOld: { key: string, size: number }[]
  /** new records dropped (the first `dropNew` of `encoded`) */
  dropNew: number
  /** existing records removed by the dead-letter tools (replayed or purged) */
  removed: { key: string, size: number }[]
}

export type DlqStaged = { nextId: number, count: number, bytes: number, quarantineNext: number, dropped: number, droppedIds: [number, number] | null }

/** Ids, count, bytes and quota of the dead-letter records on disk, and the quarantine's ids. */
export class DeadLetterStore {
  private nextId: number
  private countValue: number
  private bytesValue: number
  private quarantineNext: number

  constructor (r: { dlq: [nextId: number, count: number, bytes: number], quarantineNext: number }, private readonly limits: Pick<StoreConfig, 'maxDlqItems' | 'maxDlqBytes'>, private readonly db: Db) {
    this.nextId = r.dlq[0]
    this.countValue = r.dlq[1]
    this.bytesValue = r.dlq[2]
    this.quarantineNext = r.quarantineNext
  }

  get count (): number { return this.countValue }
  get bytes (): number { return this.bytesValue }

  /**
   * Encodes the cycle's records and picks, oldest first, what the quota drops; `drops` are
   * ids the dead-letter tools remove (their sizes are read so the byte count stays exact).
   */
  async plan (records: DlqRecord[], drops: readonly number[] = []): Promise<DlqPlan> {
    const encoded = records.map(encodeDlqRecord)
    const removed: { key: string, size: number }[] = []
    if (drops.length) {
      const keys = [...new Set(drops)].map((id) => K.dlq(id))
      const values = await this.db.getMany(keys)
      keys.forEach((k, i) => { const v = values[i]; if (v !== undefined) removed.push({ key: k, size: v.length + KEY_BYTES }) })
    }
    const gone = new Set(removed.map((r) => r.key))
    let items = this.countValue + encoded.length - removed.length
    let bytes = this.bytesValue
    for (const r of removed) bytes -= r.size
    for (const e of encoded) bytes += e.length + KEY_BYTES
    const { maxDlqItems, maxDlqBytes } = this.limits
    const over = (): boolean => items > maxDlqItems || bytes > maxDlqBytes
    const dropOld: { key: string, size: number }[] = []
    let after: string | undefined
    while (over()) {
      const limit = Math.min(Math.max(items - maxDlqItems, 0) + 64, 4096)
      const range = after === undefined ? K.all('dlq') : { gt: after, lt: K.all('dlq').lt }
      const chunk = await this.db.iterator({ ...range, limit }).all()
      for (const [k, v] of chunk) {
        if (gone.has(k)) continue
        dropOld.push({ key: k, size: v.length + KEY_BYTES })
        items--; bytes -= v.length + KEY_BYTES
        if (!over()) break
      }
      if (chunk.length < limit) break
      after = chunk[chunk.length - 1]![0]
    }
    let dropNew = 0
    while (over() && dropNew < encoded.length) {
      items--; bytes -= encoded[dropNew]!.length + KEY_BYTES
      dropNew++
    }
    return { encoded, dropOld, dropNew, removed }
  }

  /**
   * Adds the planned records, drops and quarantined entries to a write batch. Call it
   * before the cycle's dedup windows are put: a quarantined window's delete must not hit
   * the window that replaces it in the same batch.
   */
  stage (b: Batch, plan: DlqPlan, quarantine: Quarantined[]): DlqStaged {
    let id = this.nextId
    let count = this.countValue
    let bytes = this.bytesValue
    for (const d of plan.removed) { b.del(d.key); count--; bytes -= d.size }
    for (const d of plan.dropOld) { b.del(d.key); count--; bytes -= d.size }
    for (let i = 0; i < plan.encoded.length; i++) {
      const e = plan.encoded[i]!
      if (i < plan.dropNew) { id++; continue } // dropped before it was written: its id is skipped
      b.put(K.dlq(id++), e)
      count++; bytes += e.length + KEY_BYTES
    }
    if (plan.encoded.length || plan.dropOld.length || plan.removed.length) b.put(K.dlqMeta, encodeCbor([id, count, bytes]))
    let qId = this.quarantineNext
    for (const q of quarantine) {
      b.del(q.key)
      b.put(K.quarantine(qId++), encodeCbor({ key: q.key, reason: q.reason, raw: q.raw }))
    }
    const dropped = plan.dropOld.length + plan.dropNew
    const firstDropped = plan.dropOld.length ? K.idOf(plan.dropOld[0]!.key) : this.nextId
    const lastDropped = plan.dropNew ? this.nextId + plan.dropNew - 1 : plan.dropOld.length ? K.idOf(plan.dropOld[plan.dropOld.length - 1]!.key) : -1
    return { nextId: id, count, bytes, quarantineNext: qId, dropped, droppedIds: dropped ? [firstDropped, lastDropped] : null }
  }

  committed (s: DlqStaged): void {
    this.nextId = s.nextId
    this.countValue = s.count
    this.bytesValue = s.bytes
    this.quarantineNext = s.quarantineNext
  }
}

function encodeDlqRecord (r: DlqRecord): Buffer {
  return encodeCbor({ ...r, at: r.at > 0xffffffff ? BigInt(r.at) : r.at, raw: Buffer.from(r.raw) })
}

/** The bytes a stored record counts against the quota (recovery recounts with this). */
export const dlqRecordBytes = (value: Uint8Array): number => value.length + KEY_BYTES

/** Dead-letter records, oldest first (bounded). */
export async function readDeadLetters (db: Db, limit: number): Promise<DlqRecord[]> {
  const out: DlqRecord[] = []
  for await (const v of db.values({ ...K.all('dlq'), limit })) out.push(decodeUntrusted(v, { maxDepth: 3 }) as DlqRecord)
  return out
}
