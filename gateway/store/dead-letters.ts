/**
 * Dead letters and quarantine. A dead-letter record (`x!` keys) keeps what could not be
 * delivered with its reason and the raw bytes: invalid payloads, readings older than the
 * dedup window, items the ingest rejected or that became unreadable in the store. A
 * quarantined entry (`q!` keys) is a store entry that could not be read at all (e.g. a
 * corrupt dedup window), moved aside so startup never crash-loops on it.
 *
 * `m!dlq` holds [nextId, count] and is written in the same batch as the records it counts;
 * recovery recounts when it is unreadable (recover.ts).
 */
import { decodeUntrusted, encodeCbor } from '../../protocol/index.ts'
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

/** Ids and the count of the dead-letter store and the quarantine. */
export class DeadLetters {
  private nextId: number
  private countValue: number
  private quarantineNext: number

  constructor (r: { dlq: [nextId: number, count: number], quarantineNext: number }) {
    this.nextId = r.dlq[0]
    this.countValue = r.dlq[1]
    this.quarantineNext = r.quarantineNext
  }

  get count (): number { return this.countValue }

  /**
   * Adds the records and quarantined entries to a write batch; returns what `committed`
   * applies once the batch is durable.
   */
  stage (b: Batch, records: DlqRecord[], quarantine: Quarantined[], drops: number[] = []): { nextId: number, added: number, quarantineNext: number } {
    let id = this.nextId
    for (const r of records) b.put(K.dlq(id++), encodeDlqRecord(r))
    // drops: existing records removed by the dlq tools (replayed or purged)
    for (const d of drops) b.del(K.dlq(d))
    const added = records.length - drops.length
    if (records.length || drops.length) b.put(K.dlqMeta, encodeCbor([id, this.countValue + added]))
    let qId = this.quarantineNext
    for (const q of quarantine) {
      b.del(q.key)
      b.put(K.quarantine(qId++), encodeCbor({ key: q.key, reason: q.reason, raw: q.raw }))
    }
    return { nextId: id, added, quarantineNext: qId }
  }

  committed (s: { nextId: number, added: number, quarantineNext: number }): void {
    this.nextId = s.nextId
    this.countValue += s.added
    this.quarantineNext = s.quarantineNext
  }
}

function encodeDlqRecord (r: DlqRecord): Buffer {
  return encodeCbor({ ...r, at: r.at > 0xffffffff ? BigInt(r.at) : r.at, raw: Buffer.from(r.raw) })
}

/** Dead-letter records, oldest first (bounded). */
export async function readDeadLetters (db: Db, limit: number): Promise<DlqRecord[]> {
  const out: DlqRecord[] = []
  for await (const v of db.values({ ...K.range('x!'), limit })) out.push(decodeUntrusted(v, { maxDepth: 3 }) as DlqRecord)
  return out
}
