import assert from 'node:assert/strict'
import { test } from 'node:test'
import fc from 'fast-check'
import { auditDevice, summarize, type StoredRow } from '../../device-sim/audit.ts'
import { RangeSet } from '../../device-sim/ranges.ts'
import { newBoot, type BootRecord, type DeviceRecord } from '../../device-sim/record.ts'

/** A boot that generated 1..n, published them all and got PUBACKs for `acked`. */
function boot (id: number, n: number, acked: [number, number][], extra: Partial<BootRecord> = {}): BootRecord {
  const b = newBoot(id)
  b.generated = n
  b.published.addRange(1, n)
  for (const [a, z] of acked) b.acked.addRange(a, z)
  return Object.assign(b, extra)
}

/** Rows as the ingest stores them: one gateway store, partition seq s in arrival order. */
function rows (bootId: number, seqs: number[], sStart = 100): StoredRow[] {
  return seqs.map((seq, i) => ({ seq, boot: bootId, gateway: 'gw1', epoch: 'e1', p: 3, s: sStart + i }))
}
const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i)

test('clean: every acknowledged reading stored once is a pass', () => {
  const rec: DeviceRecord = { id: 'd1', boots: [boot(1000, 50, [[1, 50]])] }
  const a = auditDevice(rec, rows(1000, range(1, 50)))
  assert.equal(a.ok, true)
  assert.deepEqual([a.acknowledged, a.stored, a.lost, a.duplicated, a.outOfOrder, a.unackedLost, a.unackedStored, a.unexpected], [50, 50, 0, 0, 0, 0, 0, 0])
  assert.equal(summarize([a]).ok, true)
})

test('an acknowledged reading missing upstream is lost: failure, with its seq listed', () => {
  const rec: DeviceRecord = { id: 'd1', boots: [boot(1000, 50, [[1, 50]])] }
  const stored = range(1, 50).filter((s) => s !== 17 && s !== 30 && s !== 31)
  const a = auditDevice(rec, rows(1000, stored))
  assert.equal(a.lost, 3)
  assert.equal(a.ok, false)
  assert.deepEqual(a.boots[0]!.lostRanges, [[17, 17], [30, 31]])
  const sum = summarize([a, auditDevice({ id: 'd2', boots: [boot(7, 5, [[1, 5]])] }, rows(7, range(1, 5)))])
  assert.equal(sum.ok, false)
  assert.equal(sum.failedDevices, 1)
  assert.equal(sum.failures[0]!.id, 'd1')
  assert.equal(sum.totals.lost, 3)
})

test('a reading stored twice is duplicated: failure', () => {
  const rec: DeviceRecord = { id: 'd1', boots: [boot(1000, 10, [[1, 10]])] }
  const r = rows(1000, range(1, 10))
  r.splice(5, 0, { ...r[4]!, s: 999 }) // seq 5 stored again by a second gateway item
  const a = auditDevice(rec, r.map((x, i) => ({ ...x, s: 100 + i })))
  assert.equal(a.duplicated, 1)
  assert.deepEqual(a.boots[0]!.duplicatedSeqs, [5])
  assert.equal(a.ok, false)
  assert.equal(a.lost, 0)
})

test('a duplicate of a never-acknowledged reading is still a failure (exactly-once is per seq)', () => {
  const rec: DeviceRecord = { id: 'd1', boots: [boot(1000, 10, [[1, 8]])] }
  const a = auditDevice(rec, rows(1000, [...range(1, 9), 9]))
  assert.equal(a.duplicated, 1)
  assert.equal(a.unackedStored, 1)
  assert.equal(a.ok, false)
})

test('unacknowledged readings lost on a reboot are allowed and reported separately', () => {
  // boot 1: 1..20 generated, 1..15 acked, 16..20 in the RAM queue when the device rebooted;
  // 16 had reached the gateway (PUBACK lost), 17..20 never did
  const b1 = boot(1000, 20, [[1, 15]], { unackedAtEnd: 5, endedBy: 'reboot' })
  const b2 = boot(1001, 10, [[1, 10]])
  const rec: DeviceRecord = { id: 'd1', boots: [b1, b2] }
  const a = auditDevice(rec, [...rows(1000, range(1, 16)), ...rows(1001, range(1, 10), 200)])
  assert.equal(a.ok, true)
  assert.equal(a.lost, 0)
  assert.equal(a.unackedLost, 4)
  assert.equal(a.unackedStored, 1)
  assert.equal(a.acknowledged, 25)
  assert.equal(a.stored, 26)
  // the same loss, but of acknowledged readings, is a failure
  const bad = auditDevice(rec, [...rows(1000, range(1, 12)), ...rows(1001, range(1, 10), 200)])
  assert.equal(bad.lost, 3)
  assert.equal(bad.unackedLost, 5)
  assert.equal(bad.ok, false)
})

test('out of order: API order, and gateway order contradicting device order', () => {
  const rec: DeviceRecord = { id: 'd1', boots: [boot(1000, 5, [[1, 5]])] }
  const api = rows(1000, [1, 2, 4, 3, 5])
  assert.equal(auditDevice(rec, api).outOfOrder, 2) // 3 after 4 in the answer, and s(3) > s(4)
  // seq order fine in the answer, but the gateway stored 4 before 3 (s lower)
  const gw = rows(1000, range(1, 5)).map((r) => r.seq === 3 ? { ...r, s: 104 } : r.seq === 4 ? { ...r, s: 103 } : r)
  const a = auditDevice(rec, gw)
  assert.equal(a.outOfOrder, 1)
  assert.equal(a.ok, false)
  // different gateway stores (epochs) are not comparable: not out of order
  const mixed = rows(1000, range(1, 5)).map((r) => r.seq! >= 3 ? { ...r, epoch: 'e2', s: r.s! - 50 } : r)
  assert.equal(auditDevice(rec, mixed).outOfOrder, 0)
})

test('rows with seqs never generated are unexpected; rows of other boots are ignored', () => {
  const rec: DeviceRecord = { id: 'd1', boots: [boot(1000, 5, [[1, 5]])] }
  const a = auditDevice(rec, [...rows(1000, [...range(1, 5), 6]), ...rows(999, [1, 2])])
  assert.equal(a.unexpected, 1)
  assert.equal(a.otherBootRows, 2)
  assert.equal(a.ok, false)
})

test('acknowledged but reported rejected by a receipt is dead-lettered, not lost', () => {
  const b = boot(1000, 5, [[1, 5]])
  b.rejected = RangeSet.from([[3, 3]])
  const a = auditDevice({ id: 'd1', boots: [b] }, rows(1000, [1, 2, 4, 5]))
  assert.equal(a.deadLettered, 1)
  assert.equal(a.lost, 0)
  assert.equal(a.ok, true)
})

test('boots compare by value whether the ingest returns them as number or text', () => {
  const rec: DeviceRecord = { id: 'd1', boots: [boot(1700000000000, 3, [[1, 3]])] }
  const a = auditDevice(rec, range(1, 3).map((seq, i) => ({ seq, boot: '1700000000000', gateway: 'g', epoch: 'e', p: 0, s: i })))
  assert.equal(a.ok, true)
  assert.equal(a.stored, 3)
})

test('property: counts always add up, and the verdict matches injected faults', () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 200 }), fc.integer({ min: 0, max: 200 }),
    fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 10 }), fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 10 }),
    fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 10 }),
    (n, ackedN, drop, dup, unackedStored) => {
      const k = Math.min(n, ackedN)
      const b = boot(1, n, k > 0 ? [[1, k]] : [])
      const set = new Map<number, number>()
      for (let s = 1; s <= k; s++) set.set(s, 1)
      for (const s of unackedStored) if (s > k && s <= n) set.set(s, 1)
      for (const s of drop) if (s <= n) set.delete(s)
      for (const s of dup) if (set.has(s)) set.set(s, set.get(s)! + 1)
      const seqs = [...set.entries()].sort((x, y) => x[0] - y[0]).flatMap(([s, c]) => Array(c).fill(s) as number[])
      const a = auditDevice({ id: 'd', boots: [b] }, rows(1, seqs))
      const ackedStored = [...set.keys()].filter((s) => s <= k).length
      const unackedStoredN = [...set.keys()].filter((s) => s > k).length
      assert.equal(a.acknowledged, k)
      assert.equal(a.lost, k - ackedStored)
      assert.equal(a.stored, set.size)
      assert.equal(a.unackedStored, unackedStoredN)
      assert.equal(a.unackedLost, n - k - unackedStoredN)
      assert.equal(a.duplicated, seqs.length - set.size)
      assert.equal(a.ok, a.lost === 0 && a.duplicated === 0)
    }))
})

test('RangeSet keeps acked seqs compact and exact', () => {
  const r = new RangeSet()
  for (let i = 1; i <= 100_000; i++) r.add(i)
  assert.equal(r.rangeCount, 1)
  assert.equal(r.size, 100_000)
  r.addRange(200_000, 200_010)
  r.add(150_000)
  r.addRange(100_001, 149_999) // bridges into 150_000
  assert.deepEqual(r.ranges(), [[1, 150_000], [200_000, 200_010]])
  assert.equal(r.size, 150_011)
  assert.ok(r.has(150_000) && r.has(200_005) && !r.has(199_999))
  fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 20 }))), (adds) => {
    const s = new RangeSet(); const ref = new Set<number>()
    for (const [a, len] of adds) { s.addRange(a, a + len); for (let x = a; x <= a + len; x++) ref.add(x) }
    assert.equal(s.size, ref.size)
    assert.deepEqual([...s.values()], [...ref].sort((x, y) => x - y))
    const rs = s.ranges()
    for (let i = 1; i < rs.length; i++) assert.ok(rs[i]![0] > rs[i - 1]![1] + 1)
  }))
})
