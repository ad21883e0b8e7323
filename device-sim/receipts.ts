/**
 * Receipts (DESIGN.md section 6): the gateway publishes CBOR `{ boot, upTo, rejected }` to
 * `devices/{id}/receipts` once readings are stored upstream. A device keeps the first
 * publish time of its last RING seqs in two typed arrays, so the end-to-end confirmation
 * latency (receipt time - first publish of `upTo`) costs a fixed ~1 KiB per device.
 */
import { decodeReceipt, type Receipt } from '../protocol/index.ts'
import type { BootRecord } from './record.ts'
import type { SimStats } from './stats.ts'

const RING = 64

export class PublishTimes {
  private readonly seqs = new Float64Array(RING).fill(-1)
  private readonly times = new Float64Array(RING)

  set (seq: number, t: number): void {
    const i = seq % RING
    this.seqs[i] = seq
    this.times[i] = t
  }

  get (seq: number): number | undefined {
    const i = seq % RING
    return this.seqs[i] === seq ? this.times[i] : undefined
  }

  clear (): void { this.seqs.fill(-1) }
}

/**
 * Applies one receipt to the device's boot records; returns the latency in ms when the
 * receipt is for the current boot and `upTo` is recent enough to be in the ring.
 */
export function applyReceipt (r: Receipt, boots: readonly BootRecord[], current: BootRecord, times: PublishTimes, now: number): number | undefined {
  const rec = boots.find((b) => String(b.boot) === String(r.boot))
  if (!rec) return undefined
  for (const s of r.rejected) rec.rejected.add(s)
  if (r.upTo === null) return undefined
  const first = rec.confirmedUpTo === null || r.upTo > rec.confirmedUpTo
  if (first) rec.confirmedUpTo = r.upTo
  if (rec !== current || !first) return undefined
  const t = times.get(r.upTo)
  return t === undefined ? undefined : now - t
}

export function handleReceipt (payload: Uint8Array, boots: readonly BootRecord[], current: BootRecord, times: PublishTimes, now: number, stats: SimStats): void {
  let r: Receipt
  try { r = decodeReceipt(payload) } catch { stats.counters.receiptErrors++; return }
  stats.counters.receipts++
  const ms = applyReceipt(r, boots, current, times, now)
  if (ms !== undefined) stats.receiptMs.recordMs(ms)
}
