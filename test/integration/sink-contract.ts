/**
 * The sink contract (ingest/sinks/types.ts), run against every implementation: leveldb in
 * ingest-sink-leveldb.test.ts; postgres when it is built. A factory gives a fresh, empty
 * store location per test that can be opened again after close (persistence).
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import type { BatchItem, Boot, Values } from '../../protocol/index.ts'
import type { ConflictRecord, Sink, StoreRequest, StoredReading } from '../../ingest/sinks/types.ts'

export type SinkFactory = (t: TestContext) => Promise<{ open: () => Promise<Sink> }>

const RX = 1_700_000_000_000

/**
 * An item; its values follow from its device seq (else from s), so that two copies of one
 * reading through two gateways carry the same content, as a device's resend does.
 */
export function item (p: number, s: number, opts: { device?: string, seq?: number | null, boot?: Boot | null, ts?: number | null, rx?: number, values?: Values } = {}): BatchItem {
  const seq = opts.seq === undefined ? s : opts.seq
  const v = seq ?? s
  return [p, s, opts.device ?? 'dev1', seq, opts.boot === undefined ? 1 : opts.boot, opts.ts === undefined ? RX - 5 : opts.ts, opts.rx ?? RX + s, opts.values ?? { t: v / 10, ok: true, tag: `x${v}` }]
}

export function req (items: BatchItem[], opts: Partial<StoreRequest> = {}): StoreRequest {
  return { gateway: 'gw1', epoch: 'ep1', floors: [], evicted: [], items, rejected: 0, ...opts }
}

async function openSink (t: TestContext, factory: SinkFactory): Promise<{ sink: Sink, reopen: () => Promise<Sink> }> {
  const loc = await factory(t)
  const opened: Sink[] = []
  t.after(async () => { for (const s of opened) await s.close() })
  const reopen = async (): Promise<Sink> => { const s = await loc.open(); opened.push(s); return s }
  return { sink: await reopen(), reopen }
}

async function allReadings (sink: Sink, device: string, limit: number, extra: { boot?: Boot | null, fromSeq?: number } = {}): Promise<{ readings: StoredReading[], pages: number }> {
  const readings: StoredReading[] = []
  let cursor: string | undefined
  let pages = 0
  for (;;) {
    const page = await sink.queryDevice({ device, limit, ...extra, ...(cursor === undefined ? {} : { cursor }) })
    pages++
    assert.ok(page.readings.length <= limit)
    readings.push(...page.readings)
    if (page.next === null) break
    assert.equal(typeof page.next, 'string')
    cursor = page.next
    assert.ok(pages < 1000, 'paging terminates')
  }
  return { readings, pages }
}

async function allConflicts (sink: Sink, q: { fleet?: string, device?: string }, limit: number): Promise<ConflictRecord[]> {
  const out: ConflictRecord[] = []
  let cursor: string | undefined
  for (let pages = 0; pages < 1000; pages++) {
    const page = await sink.queryConflicts({ ...q, limit, ...(cursor === undefined ? {} : { cursor }) })
    assert.ok(page.conflicts.length <= limit)
    out.push(...page.conflicts)
    if (page.next === null) return out
    cursor = page.next
  }
  throw new Error('paging does not terminate')
}

export function runSinkContract (name: string, factory: SinkFactory): void {
  test(`${name}: stores new items once; the same items again are duplicates, in item order`, async (t) => {
    const { sink } = await openSink(t, factory)
    const items = [item(0, 1), item(0, 2), item(1, 1, { device: 'dev2' })]
    assert.deepEqual(await sink.storeBatch(req(items)), ['stored', 'stored', 'stored'])
    assert.deepEqual(await sink.storeBatch(req([item(0, 3), ...items])), ['stored', 'duplicate', 'duplicate', 'duplicate'])
    assert.deepEqual(await sink.storeBatch(req([item(0, 9), item(0, 9)])), ['stored', 'duplicate'], 'twice in one request')
    const { readings } = await allReadings(sink, 'dev1', 100)
    assert.deepEqual(readings.map((r) => r.s), [1, 2, 3, 9])
    assert.deepEqual(readings[0], { gateway: 'gw1', epoch: 'ep1', p: 0, s: 1, seq: 1, boot: 1, ts: RX - 5, rx: RX + 1, values: { t: 0.1, ok: true, tag: 'x1' } })
  })

  test(`${name}: the transport dedup key is (gateway, epoch, p, s)`, async (t) => {
    const { sink } = await openSink(t, factory)
    // Without a device seq only the transport key identifies an item.
    const i01 = item(0, 1, { seq: null })
    assert.deepEqual(await sink.storeBatch(req([i01])), ['stored'])
    assert.deepEqual(await sink.storeBatch(req([item(1, 1, { seq: null })])), ['stored'], 'other partition')
    assert.deepEqual(await sink.storeBatch(req([i01], { epoch: 'ep2' })), ['stored'], 'other epoch')
    assert.deepEqual(await sink.storeBatch(req([i01], { gateway: 'gw2' })), ['stored'], 'other gateway')
    assert.deepEqual(await sink.storeBatch(req([i01], { gateway: 'gw2' })), ['duplicate'])
    assert.deepEqual(await sink.storeBatch(req([item(0, 1, { seq: 77 })])), ['duplicate'], 'same transport key, whatever the payload')
  })

  test(`${name}: the natural key (device, boot, seq) dedups across gateways and epochs`, async (t) => {
    const { sink, reopen } = await openSink(t, factory)
    assert.deepEqual(await sink.storeBatch(req([item(0, 1, { seq: 5 }), item(0, 2, { seq: 6, boot: null })])), ['stored', 'stored'])
    // The device failed over: gateway 2 resends what gateway 1 already delivered.
    assert.deepEqual(await sink.storeBatch(req([item(3, 40, { seq: 5 }), item(3, 41, { seq: 6, boot: null }), item(3, 42, { seq: 7 })], { gateway: 'gw2' })), ['duplicate', 'duplicate', 'stored'])
    assert.deepEqual(await sink.storeBatch(req([item(0, 9, { seq: 7 })], { epoch: 'ep-new' })), ['duplicate'], 'a new epoch of gateway 1')
    assert.deepEqual(await sink.storeBatch(req([item(3, 40, { seq: 5 })], { gateway: 'gw2' })), ['duplicate'], 'the retransmit of the refused copy')
    assert.deepEqual(await sink.storeBatch(req([
      item(0, 3, { seq: 5, boot: 2 }), // another boot
      item(0, 4, { seq: 5, boot: '1' }), // text boot "1" is not numeric boot 1
      item(0, 5, { seq: 5, device: 'dev2' }), // another device
      item(0, 6, { seq: 8 }), item(0, 7, { seq: 8 }) // twice in one request, different s
    ])), ['stored', 'stored', 'stored', 'stored', 'duplicate'])
    assert.deepEqual(await sink.storeBatch(req([item(5, 1, { seq: null, rx: RX + 2 })], { gateway: 'gw3' })), ['stored'], 'no seq: no natural key')
    const { readings } = await allReadings(sink, 'dev1', 100)
    assert.deepEqual(readings.map((r) => [r.boot, r.seq, r.gateway, r.s]), [
      [null, 6, 'gw1', 2], [1, 5, 'gw1', 1], [1, 7, 'gw2', 42], [1, 8, 'gw1', 6], [1, null, 'gw3', 1], [2, 5, 'gw1', 3], ['1', 5, 'gw1', 4]
    ], 'one copy of each reading, the first one stored')
    const st = await sink.stats()
    assert.equal(st.stored, 8)
    assert.deepEqual(st.gateways.gw2, { stored: 1, duplicates: 3, rejected: 0, evicted: 0, conflicts: 0 })
    await sink.close()
    const again = await reopen()
    assert.deepEqual(await again.storeBatch(req([item(6, 1, { seq: 8 }), item(6, 2, { seq: 6, boot: null })], { gateway: 'gw4' })), ['duplicate', 'duplicate'], 'after a restart')
  })

  test(`${name}: the natural key is per fleet: the same (device, boot, seq) from two fleets is stored by each, within a fleet once`, async (t) => {
    const { sink, reopen } = await openSink(t, factory)
    const copy = (p: number, s: number): BatchItem => item(p, s, { seq: 5 })
    assert.deepEqual(await sink.storeBatch(req([copy(0, 1)], { gateway: 'gwA1', fleet: 'a' })), ['stored'])
    assert.deepEqual(await sink.storeBatch(req([copy(0, 1)], { gateway: 'gwB1', fleet: 'b' })), ['stored'], 'another fleet: not a duplicate')
    assert.deepEqual(await sink.storeBatch(req([copy(2, 7)], { gateway: 'gwA2', fleet: 'a' })), ['duplicate'], 'another gateway of fleet a')
    assert.deepEqual(await sink.storeBatch(req([copy(2, 7)], { gateway: 'gwB2', fleet: 'b' })), ['duplicate'], 'another gateway of fleet b')
    assert.deepEqual(await sink.storeBatch(req([copy(0, 1)], { gateway: 'gwD1' })), ['stored'], 'no fleet (default)')
    assert.deepEqual(await sink.storeBatch(req([copy(4, 2)], { gateway: 'gwD2', fleet: 'default' })), ['duplicate'], 'no fleet is fleet default')
    // Concurrent copies: two fleets, three gateways each: each fleet stores each reading once.
    const items = Array.from({ length: 20 }, (_, i) => item(i % 2, 100 + i, { seq: 1000 + i, device: `f${i % 3}` }))
    const results = await Promise.all(['x', 'y'].flatMap((f) => [1, 2, 3].map((g) => sink.storeBatch(req(items, { gateway: `gw-${f}${g}`, fleet: f })))))
    for (let i = 0; i < items.length; i++) {
      assert.equal(results.filter((r) => r[i] === 'stored').length, 2, `item ${i}: stored once per fleet`)
    }
    const { readings } = await allReadings(sink, 'dev1', 100)
    assert.deepEqual(readings.map((r) => r.gateway).sort(), ['gwA1', 'gwB1', 'gwD1'])
    await sink.close()
    const again = await reopen()
    assert.deepEqual(await again.storeBatch(req([copy(6, 1)], { gateway: 'gwB3', fleet: 'b' })), ['duplicate'], 'after a restart, fleet b')
    assert.deepEqual(await again.storeBatch(req([copy(6, 1)], { gateway: 'gwC1', fleet: 'c' })), ['stored'], 'after a restart, a new fleet')
  })

  test(`${name}: a copy of a natural key with other content is a conflict: kept in the conflicts record, the stored reading untouched`, async (t) => {
    // A gateway of the fleet sends sensor-1's seqs first with forged values; the real
    // gateway's readings must not be answered duplicate (its gateway would delete them).
    const { sink, reopen } = await openSink(t, factory)
    const forged = { t: 666 }
    const real = { t: 21.5, unit: 'C' }
    const evil = [1, 2, 3].map((q) => item(0, q, { device: 'sensor-1', seq: q, values: forged }))
    assert.deepEqual(await sink.storeBatch(req(evil, { gateway: 'gw-evil', fleet: 'a' })), ['stored', 'stored', 'stored'])
    const realItems = [1, 2, 3].map((q) => item(4, 100 + q, { device: 'sensor-1', seq: q, values: real }))
    assert.deepEqual(await sink.storeBatch(req(realItems, { gateway: 'gw-real', fleet: 'a' })), ['conflict', 'conflict', 'conflict'])
    assert.deepEqual((await allReadings(sink, 'sensor-1', 100)).readings.map((r) => [r.gateway, r.seq, r.values]), [1, 2, 3].map((q) => ['gw-evil', q, forged]), 'the first copy stays the reading')
    const recorded = await allConflicts(sink, { fleet: 'a', device: 'sensor-1' }, 2)
    assert.equal(recorded.length, 3)
    assert.deepEqual(recorded[0], {
      fleet: 'a',
      device: 'sensor-1',
      boot: 1,
      seq: 1,
      stored: { gateway: 'gw-evil', epoch: 'ep1', p: 0, s: 1, ts: RX - 5, rx: RX + 1, values: forged },
      conflicting: { gateway: 'gw-real', epoch: 'ep1', p: 4, s: 101, ts: RX - 5, rx: RX + 101, values: real },
      recordedAt: recorded[0]!.recordedAt
    })
    assert.ok(Math.abs(recorded[0]!.recordedAt - Date.now()) < 60_000, 'recordedAt is the time of recording')
    assert.deepEqual(recorded.map((c) => [c.seq, c.conflicting.s]), [[1, 101], [2, 102], [3, 103]])
    assert.deepEqual((await sink.stats()).gateways['gw-real'], { stored: 0, duplicates: 0, rejected: 0, evicted: 0, conflicts: 3 })
    assert.equal((await sink.stats()).conflicts, 3)

    assert.deepEqual(await sink.storeBatch(req([realItems[0]!], { gateway: 'gw-real', fleet: 'a' })), ['duplicate'], 'a retransmit of the conflicting copy is a duplicate by its transport key')
    assert.deepEqual(await sink.storeBatch(req([
      item(1, 7, { device: 'sensor-1', seq: 1, values: { t: 666 }, rx: RX + 999 }), // only rx differs: the same reading
      item(1, 8, { device: 'sensor-1', seq: 2, values: forged, ts: RX - 6 }), // the device time differs
      item(1, 9, { device: 'sensor-1', seq: 3, values: { t: 666, extra: 1 } }) // one more value
    ], { gateway: 'gw-third', fleet: 'a' })), ['duplicate', 'conflict', 'conflict'])
    assert.deepEqual(await sink.storeBatch(req([item(0, 1, { device: 'sensor-1', seq: 1, values: real })], { gateway: 'gw-b', fleet: 'b' })), ['stored'], 'another fleet: another reading')
    assert.deepEqual(await allConflicts(sink, { fleet: 'b' }, 10), [])
    assert.equal((await allConflicts(sink, {}, 1)).length, 5, 'every fleet, paged one by one')
    assert.equal((await allConflicts(sink, { device: 'sensor-1' }, 2)).length, 5, 'every fleet, one device')
    assert.deepEqual(await allConflicts(sink, { fleet: 'a', device: 'sensor-2' }, 10), [])
    await sink.close()

    const again = await reopen()
    assert.deepEqual(await again.storeBatch(req([
      item(2, 1, { device: 'sensor-1', seq: 3, values: real }),
      item(2, 2, { device: 'sensor-1', seq: 2, values: { t: 666 } })
    ], { gateway: 'gw-fourth', fleet: 'a' })), ['conflict', 'duplicate'], 'after a restart, from disk')
    assert.equal((await allConflicts(again, { fleet: 'a' }, 100)).length, 6)
    assert.equal((await again.stats()).conflicts, 6)
  })

  test(`${name}: conflicts within one request and between concurrent requests: one copy stored, each other content recorded once`, async (t) => {
    const { sink } = await openSink(t, factory)
    assert.deepEqual(await sink.storeBatch(req([
      item(0, 1, { seq: 5, values: { t: 1 } }),
      item(0, 2, { seq: 5, values: { t: 2 } }),
      item(0, 3, { seq: 5, values: { t: 1 } })
    ])), ['stored', 'conflict', 'duplicate'])
    const n = 10
    const results = await Promise.all(Array.from({ length: 4 }, (_, g) =>
      sink.storeBatch(req(Array.from({ length: n }, (_, i) => item(i % 2, 10 + i, { device: 'race', seq: i, values: { g } })), { gateway: `gw-race${g}` }))))
    for (let i = 0; i < n; i++) {
      assert.deepEqual(results.map((r) => r[i]).sort(), ['conflict', 'conflict', 'conflict', 'stored'], `item ${i}: one copy stored, three conflicts`)
    }
    assert.equal((await allReadings(sink, 'race', 100)).readings.length, n)
    const recorded = await allConflicts(sink, { device: 'race' }, 7)
    assert.equal(recorded.length, 3 * n)
    for (const c of recorded) {
      assert.ok(c.stored !== null)
      assert.notDeepEqual(c.stored.values, c.conflicting.values)
      assert.notEqual(c.stored.gateway, c.conflicting.gateway)
    }
    assert.equal((await sink.stats()).conflicts, 1 + 3 * n)
  })

  test(`${name}: copies far apart in seq in one request are each found (a resend of old and new readings)`, async (t) => {
    const { sink } = await openSink(t, factory)
    assert.deepEqual(await sink.storeBatch(req([item(0, 1, { seq: 1 }), item(0, 2, { seq: 5000 }), item(0, 3, { seq: 9000, boot: null })])), ['stored', 'stored', 'stored'])
    assert.deepEqual(await sink.storeBatch(req([
      item(1, 1, { seq: 5000 }), item(1, 2, { seq: 2500 }), item(1, 3, { seq: 1 }), item(1, 4, { seq: 1, values: { t: 9 } }), item(1, 5, { seq: 9000, boot: null }), item(1, 6, { seq: 9001 })
    ], { gateway: 'gw2' })), ['duplicate', 'stored', 'duplicate', 'conflict', 'duplicate', 'stored'])
  })

  test(`${name}: concurrent copies of a reading through several gateways store it exactly once`, async (t) => {
    const { sink } = await openSink(t, factory)
    const items = Array.from({ length: 40 }, (_, i) => item(i % 3, 100 + i, { seq: i, device: `d${i % 5}` }))
    const results = await Promise.all(Array.from({ length: 6 }, (_, g) => sink.storeBatch(req(items, { gateway: `gw${g}` }))))
    for (let i = 0; i < items.length; i++) {
      assert.equal(results.filter((r) => r[i] === 'stored').length, 1, `item ${i} stored exactly once`)
    }
    let n = 0
    for (let d = 0; d < 5; d++) n += (await allReadings(sink, `d${d}`, 1000)).readings.length
    assert.equal(n, 40)
    assert.equal((await sink.stats()).duplicates, 5 * 40)
  })

  test(`${name}: floors: an item below the recorded floor is a duplicate and not stored; the floor never goes down`, async (t) => {
    const { sink } = await openSink(t, factory)
    assert.deepEqual(await sink.storeBatch(req([item(0, 10), item(0, 11)], { floors: [[0, 10]] })), ['stored', 'stored'])
    // The gateway moved on: floor 20. Seqs below it were acked; anything below is stale.
    assert.deepEqual(await sink.storeBatch(req([item(0, 20)], { floors: [[0, 20]] })), ['stored'])
    assert.deepEqual(await sink.storeBatch(req([item(0, 11), item(0, 15)], { floors: [[0, 10]] })), ['duplicate', 'duplicate'], 'late request with an older floor')
    assert.deepEqual(await sink.storeBatch(req([item(0, 20), item(0, 21)], { floors: [[0, 20]] })), ['duplicate', 'stored'], 'at or above the floor: state kept')
    const { readings } = await allReadings(sink, 'dev1', 100)
    assert.deepEqual(readings.map((r) => r.s), [10, 11, 20, 21], '15 was never stored')
    const st = await sink.stats()
    assert.equal(st.stored, 4)
    assert.equal(st.duplicates, 3)
  })

  test(`${name}: a floor in one partition does not affect another`, async (t) => {
    const { sink } = await openSink(t, factory)
    await sink.storeBatch(req([], { floors: [[0, 100]] }))
    assert.deepEqual(await sink.storeBatch(req([item(1, 5), item(0, 5)])), ['stored', 'duplicate'])
  })

  test(`${name}: evicted ranges are recorded idempotently and counted as items`, async (t) => {
    const { sink } = await openSink(t, factory)
    await sink.storeBatch(req([], { evicted: [[0, 1, 10]] }))
    await sink.storeBatch(req([], { evicted: [[0, 1, 10]] }))
    assert.equal((await sink.stats()).evicted, 10, 'the same range twice counts once')
    await sink.storeBatch(req([item(0, 30)], { evicted: [[0, 5, 14], [1, 1, 10]] }))
    const st = await sink.stats()
    assert.equal(st.evicted, 10 + 4 + 10, 'overlap counts only the new seqs; partitions are separate')
    assert.equal(st.gateways.gw1?.evicted, 24)
    await sink.storeBatch(req([], { evicted: [[0, 1, 10]], gateway: 'gw2' }))
    assert.equal((await sink.stats()).evicted, 34, 'another gateway is another range')
  })

  test(`${name}: stats count stored, duplicates, rejected, globally and per gateway`, async (t) => {
    const { sink } = await openSink(t, factory)
    assert.deepEqual(await sink.stats(), { stored: 0, duplicates: 0, rejected: 0, evicted: 0, conflicts: 0, gateways: {} })
    await sink.storeBatch(req([item(0, 1), item(0, 2)], { rejected: 3 }))
    await sink.storeBatch(req([item(0, 2)]))
    await sink.storeBatch(req([item(0, 1, { device: 'dev2' })], { gateway: 'gw2', rejected: 1 }))
    assert.deepEqual(await sink.stats(), {
      stored: 3,
      duplicates: 1,
      rejected: 4,
      evicted: 0,
      conflicts: 0,
      gateways: {
        gw1: { stored: 2, duplicates: 1, rejected: 3, evicted: 0, conflicts: 0 },
        gw2: { stored: 1, duplicates: 0, rejected: 1, evicted: 0, conflicts: 0 }
      }
    })
  })

  test(`${name}: readings come ordered by (boot, seq) with cursor paging`, async (t) => {
    const { sink } = await openSink(t, factory)
    const items: BatchItem[] = [
      item(0, 1, { boot: 'b', seq: 2 }),
      item(0, 2, { boot: 2, seq: 10 }),
      item(0, 3, { boot: 2, seq: 9 }),
      item(0, 4, { boot: 'a', seq: 1 }),
      item(0, 5, { boot: null, seq: 4 }),
      item(0, 6, { boot: 2, seq: null, rx: RX + 100 }),
      item(0, 7, { boot: 10, seq: 1 }),
      item(0, 8, { boot: 2, seq: null, rx: RX + 50 }),
      item(0, 9, { boot: '10', seq: 0 }),
      item(0, 10, { device: 'dev10', boot: 1, seq: 1 })
    ]
    await sink.storeBatch(req(items))
    const expect = [
      [null, 4], [2, 9], [2, 10], [2, null], [2, null], [10, 1], ['10', 0], ['a', 1], ['b', 2]
    ]
    for (const limit of [1, 2, 4, 100]) {
      const { readings, pages } = await allReadings(sink, 'dev1', limit)
      assert.deepEqual(readings.map((r) => [r.boot, r.seq]), expect, `limit ${limit}`)
      assert.equal(pages, Math.ceil(expect.length / limit), `no empty last page at limit ${limit}`)
    }
    const seqless = (await allReadings(sink, 'dev1', 100, { boot: 2 })).readings.filter((r) => r.seq === null)
    assert.deepEqual(seqless.map((r) => r.rx), [RX + 50, RX + 100], 'seq-less readings follow, by receive time')
    assert.deepEqual((await allReadings(sink, 'dev1', 1, { boot: 2, fromSeq: 10 })).readings.map((r) => r.s), [2, 8, 6])
    assert.deepEqual((await allReadings(sink, 'dev1', 10, { boot: null })).readings.map((r) => r.s), [5])
    assert.deepEqual((await allReadings(sink, 'dev1', 10, { boot: 'a' })).readings.map((r) => r.s), [4])
    assert.deepEqual((await allReadings(sink, 'dev1', 10, { boot: '10' })).readings.map((r) => r.s), [9], 'text boot "10" is not numeric boot 10')
    assert.deepEqual((await allReadings(sink, 'dev10', 10)).readings.map((r) => r.s), [10])
    assert.deepEqual(await sink.queryDevice({ device: 'nobody', limit: 10 }), { readings: [], next: null })
  })

  test(`${name}: queries filter by gateways (fleets) and stop at maxBytes; cursors continue`, async (t) => {
    const { sink } = await openSink(t, factory)
    await sink.storeBatch(req([item(0, 1), item(0, 3), item(0, 5)], { gateway: 'gwA' }))
    await sink.storeBatch(req([item(0, 2), item(0, 4), item(0, 6)], { gateway: 'gwB' }))
    const collect = async (q: { gateways?: string[], maxBytes?: number, limit: number }): Promise<StoredReading[]> => {
      const out: StoredReading[] = []
      let cursor: string | undefined
      for (let pages = 0; pages < 100; pages++) {
        const page = await sink.queryDevice({ device: 'dev1', ...q, ...(cursor === undefined ? {} : { cursor }) })
        assert.ok(page.readings.length <= q.limit)
        if (q.maxBytes !== undefined) assert.ok(page.readings.length <= 1, 'a 1-byte cap returns one reading a page')
        out.push(...page.readings)
        if (page.next === null) return out
        cursor = page.next
      }
      throw new Error('paging does not terminate')
    }
    assert.deepEqual((await collect({ gateways: ['gwA'], limit: 2 })).map((r) => [r.gateway, r.s]), [['gwA', 1], ['gwA', 3], ['gwA', 5]])
    assert.deepEqual((await collect({ gateways: ['gwB', 'gwX'], limit: 10 })).map((r) => r.s), [2, 4, 6])
    assert.deepEqual(await collect({ gateways: [], limit: 10 }), [])
    assert.deepEqual((await collect({ limit: 10, maxBytes: 1 })).map((r) => r.seq), [1, 2, 3, 4, 5, 6])
  })

  test(`${name}: a cursor from another device is refused`, async (t) => {
    const { sink } = await openSink(t, factory)
    await sink.storeBatch(req([item(0, 1), item(0, 2), item(0, 3, { device: 'dev2' })]))
    const page = await sink.queryDevice({ device: 'dev1', limit: 1 })
    assert.ok(page.next)
    await assert.rejects(sink.queryDevice({ device: 'dev2', limit: 1, cursor: page.next }), { name: 'ValidationError', field: 'cursor' })
  })

  test(`${name}: concurrent requests with the same items store each exactly once`, async (t) => {
    const { sink } = await openSink(t, factory)
    const items = Array.from({ length: 50 }, (_, i) => item(i % 4, i))
    const results = await Promise.all(Array.from({ length: 8 }, () => sink.storeBatch(req(items, { floors: [[0, 0], [1, 1]] }))))
    for (let i = 0; i < items.length; i++) {
      assert.equal(results.filter((r) => r[i] === 'stored').length, 1, `item ${i} stored exactly once`)
    }
    assert.equal((await allReadings(sink, 'dev1', 1000)).readings.length, 50)
    const st = await sink.stats()
    assert.equal(st.stored, 50)
    assert.equal(st.duplicates, 7 * 50)
  })

  test(`${name}: dedup state, floors, evicted ranges, stats and readings survive close and reopen`, async (t) => {
    const { sink, reopen } = await openSink(t, factory)
    await sink.storeBatch(req([item(0, 5), item(0, 6), item(2, 1)], { floors: [[0, 5]], evicted: [[0, 0, 4]], rejected: 1 }))
    await sink.close()
    await sink.close() // idempotent
    const again = await reopen()
    assert.deepEqual(await again.storeBatch(req([item(0, 4), item(0, 5), item(0, 6), item(2, 1), item(0, 7)], { evicted: [[0, 0, 4]] })), ['duplicate', 'duplicate', 'duplicate', 'duplicate', 'stored'])
    assert.deepEqual(await again.stats(), { stored: 4, duplicates: 4, rejected: 1, evicted: 5, conflicts: 0, gateways: { gw1: { stored: 4, duplicates: 4, rejected: 1, evicted: 5, conflicts: 0 } } })
    assert.deepEqual((await allReadings(again, 'dev1', 2)).readings.map((r) => r.s), [1, 5, 6, 7])
  })
}
