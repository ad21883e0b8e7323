/**
 * Exactly-once audit: compares what the simulator recorded (per device and boot: seqs
 * generated, published, acknowledged) with what the ingest's query API returns.
 *
 * Definitions, per (device, boot); G = seqs 1..generated, A = acknowledged (PUBACK),
 * S = the stored rows of that boot (a multiset of seqs):
 * - acknowledged = |A|; stored = distinct seqs in S that are in G.
 * - lost = acked seqs not stored and not reported rejected in a receipt. FAILURE
 *   (an acknowledged reading vanished).
 * - deadLettered = acked seqs not stored that a receipt reported rejected: accounted for
 *   (the gateway dead-lettered them and said so), not a failure.
 * - duplicated = rows beyond the first for any seq (acked or not). FAILURE.
 * - outOfOrder = rows the API returned out of (boot, seq) order, plus rows stored before
 *   a lower seq of the same boot by the same gateway store: with readings sorted by seq,
 *   a row whose (gateway, epoch) equals the previous row's and whose partition seq `s` is
 *   lower. A device publishes in seq order on one connection and the gateway keeps order
 *   per partition, so the gateway's order must agree with the device's. FAILURE.
 * - unexpected = stored seqs the simulator never generated (seq outside G, or no seq).
 *   FAILURE (phantom data; also what reusing `--boot` across runs looks like).
 * - unackedStored = seqs in G \ A that are stored: allowed (e.g. PUBACK lost in a drop).
 * - unackedLost = seqs in G \ A not stored: allowed (never acknowledged: lost with the
 *   queue on a reboot, or still in flight at stop).
 *
 * `auditDevice` is pure; `runAudit` adds the paging HTTP client around it.
 */
import type { Range } from './ranges.ts'
import type { BootRecord, DeviceRecord } from './record.ts'

export type StoredRow = { seq: number | null, boot: number | string | null, gateway?: string, epoch?: string, p?: number, s?: number }

export type AuditCounts = {
  generated: number
  published: number
  acknowledged: number
  stored: number
  lost: number
  deadLettered: number
  duplicated: number
  outOfOrder: number
  unexpected: number
  unackedStored: number
  unackedLost: number
}

export type BootAudit = AuditCounts & { boot: number, lostRanges: Range[], duplicatedSeqs: number[] }
export type DeviceAudit = AuditCounts & { id: string, ok: boolean, boots: BootAudit[], otherBootRows: number }
export type AuditResult = { ok: boolean, devices: number, failedDevices: number, totals: AuditCounts, failures: DeviceAudit[], perDevice: DeviceAudit[] }

const MAX_LISTED = 20

export function zeroCounts (): AuditCounts {
  return { generated: 0, published: 0, acknowledged: 0, stored: 0, lost: 0, deadLettered: 0, duplicated: 0, outOfOrder: 0, unexpected: 0, unackedStored: 0, unackedLost: 0 }
}

export function addCounts (into: AuditCounts, c: AuditCounts): AuditCounts {
  for (const k of Object.keys(into) as (keyof AuditCounts)[]) into[k] += c[k]
  return into
}

export function isFailure (c: AuditCounts): boolean {
  return c.lost > 0 || c.duplicated > 0 || c.outOfOrder > 0 || c.unexpected > 0
}

/** Index of the first element >= x in a sorted array. */
function lowerBound (a: readonly number[], x: number): number {
  let lo = 0; let hi = a.length
  while (lo < hi) { const m = (lo + hi) >> 1; if (a[m]! < x) lo = m + 1; else hi = m }
  return lo
}

export function auditBoot (rec: BootRecord, rows: readonly StoredRow[]): BootAudit {
  const c: BootAudit = { ...zeroCounts(), boot: rec.boot, lostRanges: [], duplicatedSeqs: [], generated: rec.generated, published: rec.published.size, acknowledged: rec.acked.size }
  // API order, as returned
  let prevSeq = -Infinity
  for (const r of rows) {
    const s = r.seq ?? -1
    if (s < prevSeq) c.outOfOrder++
    prevSeq = s
  }
  const sorted = rows.slice().sort((a, b) => (a.seq ?? -1) - (b.seq ?? -1))
  const distinct: number[] = []
  let prev: StoredRow | undefined
  for (const r of sorted) {
    const seq = r.seq
    if (seq === null || !Number.isSafeInteger(seq) || seq < 1 || seq > rec.generated) { c.unexpected++; continue }
    if (prev && prev.seq === seq) {
      c.duplicated++
      if (c.duplicatedSeqs.length < MAX_LISTED && c.duplicatedSeqs.at(-1) !== seq) c.duplicatedSeqs.push(seq)
      continue
    }
    if (prev && prev.gateway === r.gateway && prev.epoch === r.epoch && prev.s !== undefined && r.s !== undefined && r.s < prev.s) c.outOfOrder++
    prev = r
    distinct.push(seq)
    if (rec.acked.has(seq)) c.stored++
    else c.unackedStored++
  }
  // acked but not stored: walk acked ranges against the sorted distinct stored seqs
  let missing = 0
  for (const [a, b] of rec.acked.ranges()) {
    let i = lowerBound(distinct, a)
    let x = a
    while (x <= b) {
      const next = i < distinct.length ? distinct[i]! : Infinity
      if (next > b) { missing += b - x + 1; pushRange(c.lostRanges, x, b, rec); break }
      if (next > x) { missing += next - x; pushRange(c.lostRanges, x, next - 1, rec) }
      x = next + 1
      i++
    }
  }
  let dead = 0
  for (const s of rec.rejected.values()) if (rec.acked.has(s) && !hasSorted(distinct, s)) dead++
  c.deadLettered = dead
  c.lost = missing - dead
  c.unackedLost = rec.generated - rec.acked.size - c.unackedStored
  c.stored = c.stored + c.unackedStored
  return c
}

function hasSorted (a: readonly number[], x: number): boolean {
  const i = lowerBound(a, x)
  return i < a.length && a[i] === x
}

function pushRange (out: Range[], a: number, b: number, rec: BootRecord): void {
  const add = (x: number, y: number): void => {
    const last = out.at(-1)
    if (last && last[1] === x - 1) last[1] = y
    else if (out.length < MAX_LISTED) out.push([x, y])
  }
  if (rec.rejected.size === 0) { add(a, b); return }
  // rejected seqs are dead-lettered, not lost: leave them out of the listing
  for (let x = a; x <= b && x - a < 100_000; x++) if (!rec.rejected.has(x)) add(x, x)
}

/** Audits one device: `rows` are everything the ingest returned for its boots (any order). */
export function auditDevice (rec: DeviceRecord, rows: readonly StoredRow[]): DeviceAudit {
  const byBoot = new Map<string, StoredRow[]>()
  for (const b of rec.boots) byBoot.set(String(b.boot), [])
  let other = 0
  for (const r of rows) {
    const list = byBoot.get(String(r.boot))
    if (list) list.push(r)
    else other++
  }
  const boots = rec.boots.map((b) => auditBoot(b, byBoot.get(String(b.boot))!))
  const totals = zeroCounts()
  for (const b of boots) addCounts(totals, b)
  return { id: rec.id, ...totals, ok: !isFailure(totals), boots, otherBootRows: other }
}

export function summarize (audits: readonly DeviceAudit[]): AuditResult {
  const totals = zeroCounts()
  const failures: DeviceAudit[] = []
  for (const a of audits) {
    addCounts(totals, a)
    if (!a.ok) failures.push(a)
  }
  return { ok: !isFailure(totals), devices: audits.length, failedDevices: failures.length, totals, failures: failures.slice(0, 50), perDevice: [...audits] }
}
