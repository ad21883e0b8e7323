/**
 * The ack mapper: the ingest answers a batch with one `[p, s, code, reason?]` per item;
 * this maps them back to the items sent (partition p, gateway seqs) and decides each
 * one's fate (upstream protocol v1):
 *
 *   0 stored, 1 duplicate      delete from the buffer
 *   2 retry                    keep; the partition is read again after backoff
 *   3 rejected                 move to the dead-letter store with the ingest's reason
 *   missing or unknown code    retry (never lose an item the ingest did not answer for)
 *
 * Pure: no I/O. The flusher applies the result (store.settle) and sends the receipts.
 */
import { AckCode, decodeTrusted, type BatchItem } from '../../protocol/index.ts'
import type { SettledItem } from './receipts.ts'

export type AckResult = [p: number, s: number, code: number, reason?: string]

export type MappedAcks = {
  deletes: { s: number, size: number }[]
  dead: { s: number, raw: Buffer, reason: string }[]
  retries: number
  byCode: Map<AckCode, number>
  /** per item, for receipts (only when asked for: it decodes every item) */
  settled: SettledItem[]
}

/** `items`: the batch already decoded (protocol v2 decodes it to send it), else decoded here for receipts. */
export function mapAcks (p: number, seqs: readonly number[], raws: readonly Buffer[], results: readonly AckResult[], withReceipts: boolean, items?: readonly BatchItem[]): MappedAcks {
  const bySeq = new Map<number, [number, string | undefined]>()
  for (const r of results) if (r[0] === p) bySeq.set(r[1], [r[2], r[3]])
  const out: MappedAcks = { deletes: [], dead: [], retries: 0, byCode: new Map(), settled: [] }
  for (let i = 0; i < seqs.length; i++) {
    const s = seqs[i]!
    const [code, reason] = bySeq.get(s) ?? [AckCode.Retry, undefined]
    out.byCode.set(code as AckCode, (out.byCode.get(code as AckCode) ?? 0) + 1)
    if (code === AckCode.Stored || code === AckCode.Duplicate) out.deletes.push({ s, size: raws[i]!.length })
    else if (code === AckCode.Rejected) out.dead.push({ s, raw: raws[i]!, reason: `rejected by the ingest: ${reason ?? 'no reason given'}` })
    else out.retries++
    if (withReceipts) {
      // the store's own bytes, scanned by readBatch before they were sent
      const item = items?.[i] ?? decodeTrusted(raws[i]!) as BatchItem
      out.settled.push({ device: item[2], seq: item[3], boot: item[4], code: code as AckCode })
    }
  }
  return out
}
