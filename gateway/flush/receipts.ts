/**
 * Receipts (docs/design.md section 6): after an acknowledged batch, one message per device and
 * boot in it, `{ boot, upTo, rejected }`. Items of a device sit in its partition in device
 * seq order and every batch starts at the partition head, so an item still waiting for a
 * retry is always in the batch: walking a device's items in order, `upTo` is the highest
 * seq of the settled prefix (stored or duplicate); rejected seqs in that prefix are listed
 * (they are in the dead-letter store, not upstream). A device without seq gets no receipt.
 */
import { AckCode, type Boot, type Receipt } from '../../protocol/index.ts'

export type SettledItem = { device: string, seq: number | null, boot: Boot | null, code: AckCode }

export function computeReceipts (items: readonly SettledItem[]): Map<string, Receipt[]> {
  const groups = new Map<string, { device: string, boot: Boot | null, upTo: number | null, rejected: number[], open: boolean }>()
  for (const it of items) {
    if (it.seq === null) continue
    const key = `${it.device}\u0000${typeof it.boot}:${String(it.boot)}`
    let g = groups.get(key)
    if (!g) { g = { device: it.device, boot: it.boot, upTo: null, rejected: [], open: true }; groups.set(key, g) }
    if (!g.open) continue
    if (it.code === AckCode.Retry) { g.open = false; continue }
    if (it.code === AckCode.Rejected) g.rejected.push(it.seq)
    else g.upTo = g.upTo === null ? it.seq : Math.max(g.upTo, it.seq)
  }
  const out = new Map<string, Receipt[]>()
  for (const g of groups.values()) {
    if (g.upTo === null && g.rejected.length === 0) continue
    const list = out.get(g.device) ?? []
    list.push({ boot: g.boot, upTo: g.upTo, rejected: g.rejected })
    out.set(g.device, list)
  }
  return out
}
