/**
 * What the simulator remembers of each device, compactly: per boot the highest seq it
 * generated and range sets of seqs published, acknowledged (PUBACK) and reported rejected
 * in receipts. This is the "what was sent" half of the audit; seqs of a boot run 1..generated.
 */
import { RangeSet, type Range } from './ranges.ts'

export type BootRecord = {
  boot: number
  /** Highest seq generated in this boot; seqs are 1..generated. */
  generated: number
  published: RangeSet
  acked: RangeSet
  /** Seqs a receipt listed as rejected upstream (dead-lettered, not silent loss). */
  rejected: RangeSet
  /** Highest `upTo` of a receipt for this boot. */
  confirmedUpTo: number | null
  /** Unacknowledged readings this boot still held when it ended (reboot) or at stop. */
  unackedAtEnd: number
  endedBy: 'reboot' | 'stop' | null
}

export type DeviceRecord = { id: string, boots: BootRecord[] }

export function newBoot (boot: number): BootRecord {
  return { boot, generated: 0, published: new RangeSet(), acked: new RangeSet(), rejected: new RangeSet(), confirmedUpTo: null, unackedAtEnd: 0, endedBy: null }
}

export type BootJson = { boot: number, generated: number, published: Range[], acked: Range[], rejected: Range[], confirmedUpTo: number | null, unackedAtEnd: number, endedBy: 'reboot' | 'stop' | null }
export type DeviceJson = { id: string, boots: BootJson[] }

export function bootToJson (b: BootRecord): BootJson {
  return { boot: b.boot, generated: b.generated, published: b.published.ranges(), acked: b.acked.ranges(), rejected: b.rejected.ranges(), confirmedUpTo: b.confirmedUpTo, unackedAtEnd: b.unackedAtEnd, endedBy: b.endedBy }
}

export function bootFromJson (j: BootJson): BootRecord {
  return { boot: j.boot, generated: j.generated, published: RangeSet.from(j.published), acked: RangeSet.from(j.acked), rejected: RangeSet.from(j.rejected), confirmedUpTo: j.confirmedUpTo, unackedAtEnd: j.unackedAtEnd, endedBy: j.endedBy }
}
