/**
 * A batch item with names. On the wire an item is the 8-element array
 * `[p, s, device, seq, boot, ts, rx, values]` (protocol/batch.ts, docs/design.md section 6);
 * code that reads more than `p` and `s` decodes it once with `itemOf` and reads fields,
 * instead of indexing the tuple (`it[4]`) in many places.
 */
import type { BatchItem, Boot, Values } from '../protocol/index.ts'

export type Item = {
  /** gateway partition */
  p: number
  /** gateway sequence number in the partition (the transport key, with gateway and epoch) */
  s: number
  device: string
  /** the device's own seq, or null */
  seq: number | null
  boot: Boot | null
  /** device timestamp (ms), or null */
  ts: number | null
  /** gateway receive time (ms) */
  rx: number
  values: Values
}

export function itemOf (t: BatchItem): Item {
  return { p: t[0], s: t[1], device: t[2], seq: t[3], boot: t[4], ts: t[5], rx: t[6], values: t[7] }
}
