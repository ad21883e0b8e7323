/**
 * Partition bound of the ingest. The sink keeps dedup state per (gateway, epoch,
 * partition); a gateway has a fixed, small number of partitions (its `--partitions`, at
 * most 1024), so a batch naming partition 40000 is not from a well-behaved gateway. Before
 * this bound, one valid token sending floors for partitions 0..65535 under fresh epochs
 * took the ingest from 84 to 573 MiB. Now:
 * - an item with p >= maxPartitions is answered rejected (code 3) with the reason, so the
 *   gateway dead-letters it, and the rest of the batch is stored;
 * - a floor or an evicted range with p >= maxPartitions refuses the whole batch as
 *   unreadable, 400 (they carry no item the gateway could dead-letter; a gateway that sends
 *   them is misconfigured against this ingest, and the refusal says which field).
 * Epochs are bounded in memory by the sink (leveldb-epochs.ts).
 */
import { AckCode, type RawBatchRequest } from '../protocol/index.ts'
import type { ValidatedItems } from './decode.ts'
import { BatchRefusal } from './refusal.ts'

/** Applies the bound in place; returns how many items it rejected. */
export function boundPartitions (batch: RawBatchRequest, items: ValidatedItems, maxPartitions: number): number {
  for (const [what, list] of [['floors', batch.floors], ['evicted', batch.evicted ?? []]] as const) {
    for (let i = 0; i < list.length; i++) {
      const p = list[i]![0]
      if (p >= maxPartitions) throw new BatchRefusal('unreadable', 'partition_out_of_range', `${what}[${i}]: partition ${p} is not below maxPartitions ${maxPartitions}`, { field: `${what}[${i}]` })
    }
  }
  let rejected = 0
  const keep: ValidatedItems['valid'] = []
  for (const v of items.valid) {
    const [p, s] = v.item
    if (p < maxPartitions) { keep.push(v); continue }
    items.results[v.index] = [p, s, AckCode.Rejected, `partition ${p} is not below maxPartitions ${maxPartitions}`]
    rejected++
  }
  if (rejected > 0) {
    items.valid = keep
    items.rejected += rejected
  }
  return rejected
}
