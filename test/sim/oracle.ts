/**
 * The acknowledgment-path simulation's model ingest and its ledger (the oracle).
 *
 * A reading is named by its natural key `device|boot|seq` (an invalid payload by
 * `device|bad|id`). The ledger follows every place a reading can be durable, from the
 * writes the in-memory databases complete (never from the gateway's memory):
 *
 *   in a gateway's store   an `i!` item on disk
 *   at the ingest          stored (model ingest below)
 *   dead-lettered          an `x!` record on disk, with a reason
 *   evicted                its item's (p, s) inside an evicted range written to disk
 *                          (drop-oldest; reported upstream later, counted there)
 *
 * Invariants, checked as they can break:
 *   - a PUBACK is given only for a reading durable in one of those places (a duplicate's
 *     PUBACK included): checked at the PUBACK;
 *   - an acknowledged reading never leaves all of them: checked at every completed write;
 *   - a dedup window written to disk claims only seqs whose items that gateway has
 *     written (in the same batch or before): checked at every completed write;
 *   - where the gateway alone promises exactly once (one gateway, no window forgotten by
 *     idle time), the ingest never stores a reading twice: checked at every store;
 *   - after the faults stop and everything drained: every acknowledged reading stored
 *     upstream exactly once, or dead-lettered, or evicted.
 */
import { AckCode, decodeBatch, decodeBatchV2, decodeTrusted, type ItemResult } from '../../protocol/index.ts'
import { DedupWindow } from '../../gateway/store/index.ts'
import { K, parseEvictedKey } from '../../gateway/store/keys.ts'
import type { Commit } from './mem-db.ts'

export class Violation extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'Violation'
  }
}

/** What the simulation decided a reading is. */
export type ReadingKind = 'ok' | 'bad' | 'reject' | 'poison'
export type Published = { nk: string, device: string, boot: number, seq: number, kind: ReadingKind, acked: boolean }

export const nkOf = (device: string, boot: unknown, seq: unknown): string => `${device}|${String(boot)}|${String(seq)}`

type GatewayBook = {
  epoch: string
  /** item key on disk -> natural key */
  items: Map<string, string>
  /** dead-letter key on disk -> natural key */
  dlq: Map<string, string>
  /** `p|s` of every item ever written -> natural key */
  everPut: Map<string, string>
  /** natural keys of every item ever written */
  everNk: Set<string>
}

export class Ledger {
  readonly published = new Map<string, Published>()
  private readonly inStore = new Map<string, number>()
  private readonly inDlq = new Map<string, number>()
  private readonly evicted = new Set<string>()
  /**
   * readings a dead-letter replay queued again (its record dropped, its item written, one
   * batch): replay is at least once by design (docs/operator.md), the ingest may get it twice
   */
  private readonly replayed = new Set<string>()
  /** readings that left a gateway's buffer upstream at least once: stored, dead-lettered or evicted (delivered mode's PUBACK) */
  private readonly settledOnce = new Set<string>()
  readonly stored = new Map<string, number>()
  private readonly books = new Map<string, GatewayBook>()
  /** per device, the seqs published in each boot (for the window check) */
  private readonly seqsOf = new Map<string, Map<number, number[]>>()
  /** the step being run (for messages) */
  step = 0
  acks = 0
  /** the first invariant broken (recorded, not thrown: it is found inside the gateway's callbacks) */
  violation: string | null = null
  /** SIM_WINDOW_CHECK=0 leaves windows unchecked, to see a window ahead of its items end in a lost reading */
  windowCheck = process.env.SIM_WINDOW_CHECK !== '0'

  /** exactlyOnce: the ingest must never store a reading twice; delivered: a PUBACK means stored upstream (or dead-lettered, evicted) */
  constructor (readonly exactlyOnce: boolean, readonly delivered: boolean) {}

  private fail (message: string): void {
    this.violation ??= message
  }

  book (gw: string): GatewayBook {
    let b = this.books.get(gw)
    if (!b) { b = { epoch: '', items: new Map(), dlq: new Map(), everPut: new Map(), everNk: new Set() }; this.books.set(gw, b) }
    return b
  }

  publish (r: Published): void {
    if (this.published.has(r.nk)) return
    this.published.set(r.nk, r)
    if (r.kind === 'bad') return
    let m = this.seqsOf.get(r.device)
    if (!m) { m = new Map(); this.seqsOf.set(r.device, m) }
    let l = m.get(r.boot)
    if (!l) { l = []; m.set(r.boot, l) }
    l.push(r.seq)
  }

  accounted (nk: string): boolean {
    return (this.inStore.get(nk) ?? 0) > 0 || (this.stored.get(nk) ?? 0) > 0 || (this.inDlq.get(nk) ?? 0) > 0 || this.evicted.has(nk)
  }

  where (nk: string): string {
    return `store ${this.inStore.get(nk) ?? 0}, ingest ${this.stored.get(nk) ?? 0}, dead letters ${this.inDlq.get(nk) ?? 0}, evicted ${this.evicted.has(nk)}`
  }

  /** A PUBACK reached the device for `nk`. */
  puback (nk: string, gw: string): void {
    const r = this.published.get(nk)
    if (!r) return this.fail(`step ${this.step}: ${gw} acknowledged ${nk}, which was never published`)
    this.acks++
    if (!this.accounted(nk)) return this.fail(`step ${this.step}: ${gw} sent a PUBACK for ${nk} with no durable copy anywhere (${this.where(nk)}): acknowledged and lost`)
    // once dead-lettered, an operator's replay may have queued it again before this PUBACK left
    if (this.delivered && !this.settledOnce.has(nk)) return this.fail(`step ${this.step}: ${gw} sent a PUBACK for ${nk} in delivered mode before the ingest stored it (${this.where(nk)})`)
    r.acked = true
  }

  private check (nk: string, why: string): void {
    const r = this.published.get(nk)
    if (r?.acked && !this.accounted(nk)) return this.fail(`step ${this.step}: acknowledged ${nk} is gone after ${why} (${this.where(nk)})`)
  }

  /** A write of gateway `gw` completed: follow what it moved. */
  commit (gw: string, c: Commit): void {
    const b = this.book(gw)
    const gone: string[] = []
    const requeued: string[] = []
    const undead = new Set<string>()
    const windows: Array<[string, Buffer]> = []
    for (const [k, v] of c) {
      const t = K.kindOf(k)
      if (t === 'item') {
        const old = b.items.get(k)
        if (old !== undefined) { b.items.delete(k); dec(this.inStore, old); gone.push(old) }
        if (v !== null) {
          const it = decodeTrusted(v) as unknown[]
          const nk = nkOf(it[2] as string, it[4], it[3])
          b.items.set(k, nk)
          inc(this.inStore, nk)
          requeued.push(nk)
          b.everPut.set(`${it[0] as number}|${it[1] as number}`, nk)
          b.everNk.add(nk)
        }
      } else if (t === 'dlq') {
        const old = b.dlq.get(k)
        if (old !== undefined) { b.dlq.delete(k); dec(this.inDlq, old); gone.push(old); undead.add(old) }
        if (v !== null) {
          const nk = dlqNk(v)
          b.dlq.set(k, nk)
          inc(this.inDlq, nk)
          this.settledOnce.add(nk)
        }
      } else if (t === 'evicted' && v !== null) {
        const { p, from } = parseEvictedKey(k)
        const to = decodeTrusted(v) as number
        for (let s = from; s <= to; s++) {
          const nk = b.everPut.get(`${p}|${s}`)
          if (nk !== undefined) { this.evicted.add(nk); this.settledOnce.add(nk) }
        }
      } else if (t === 'dedup' && v !== null) {
        windows.push([K.deviceOfDedup(k), v])
      } else if (k === K.epoch && v !== null) {
        b.epoch = v.toString()
      }
    }
    for (const nk of requeued) if (undead.has(nk)) this.replayed.add(nk)
    for (const nk of gone) this.check(nk, `a write of ${gw}`)
    if (this.windowCheck) for (const [device, v] of windows) this.checkWindow(gw, device, v)
  }

  /** A window on disk claims only seqs whose items this gateway has written. */
  private checkWindow (gw: string, device: string, v: Buffer): void {
    const w = DedupWindow.decode(v)
    const boots = this.seqsOf.get(device)
    if (!boots) return
    const b = this.book(gw)
    for (const [boot, seqs] of boots) {
      for (const seq of seqs) {
        if (!w.claims(boot, seq)) continue
        const nk = nkOf(device, boot, seq)
        if (!b.everNk.has(nk)) return this.fail(`step ${this.step}: ${gw} wrote a dedup window of ${device} claiming boot ${boot} seq ${seq}, whose item it never wrote: after a crash its resend is acknowledged as a duplicate and lost`)
      }
    }
  }

  /** The ingest stored `nk` (once more). */
  storedUpstream (nk: string, where: string): void {
    const n = (this.stored.get(nk) ?? 0) + 1
    this.stored.set(nk, n)
    this.settledOnce.add(nk)
    if (n > 1 && this.exactlyOnce && !this.replayed.has(nk)) return this.fail(`step ${this.step}: ${nk} stored upstream twice (second copy ${where})`)
  }

  /** After the drain: every acknowledged reading stored once, dead-lettered or evicted. */
  final (): { acked: number, stored: number, deadLettered: number, evicted: number } {
    const out = { acked: 0, stored: 0, deadLettered: 0, evicted: 0 }
    for (const r of this.published.values()) {
      if (!r.acked) continue
      out.acked++
      const n = this.stored.get(r.nk) ?? 0
      if (n > 1 && this.exactlyOnce && !this.replayed.has(r.nk)) throw new Violation(`drained: ${r.nk} stored upstream ${n} times`)
      if (n >= 1) { out.stored++; continue }
      if ((this.inDlq.get(r.nk) ?? 0) > 0) { out.deadLettered++; continue }
      if (this.evicted.has(r.nk)) { out.evicted++; continue }
      throw new Violation(`drained: acknowledged ${r.nk} is neither stored upstream, dead-lettered nor evicted (${this.where(r.nk)})`)
    }
    return out
  }
}

function inc (m: Map<string, number>, k: string): void { m.set(k, (m.get(k) ?? 0) + 1) }
function dec (m: Map<string, number>, k: string): void { m.set(k, (m.get(k) ?? 0) - 1) }

/** The reading a dead-letter record holds, and its reason (which must be there). */
function dlqNk (v: Buffer): string {
  const rec = decodeTrusted(v) as { kind: string, reason: string, raw: Uint8Array, device?: string }
  if (typeof rec.reason !== 'string' || rec.reason === '') throw new Violation('a dead-letter record without a reason')
  const raw = Buffer.from(rec.raw)
  if (rec.kind === 'item') {
    const it = decodeTrusted(raw) as unknown[]
    return nkOf(it[2] as string, it[4], it[3])
  }
  const text = raw.toString('utf8')
  if (text.startsWith('bad:')) { const [, device, id] = text.split(':'); return `${device!}|bad|${id!}` }
  const j = (raw[0] === 0x7b ? JSON.parse(text) : decodeTrusted(raw)) as { seq: number, boot: number }
  return nkOf(rec.device ?? '?', j.boot, j.seq)
}

/** What the ingest does with one request. */
export type IngestAnswer = { status: 200, results: ItemResult[] } | { status: 400 }

/**
 * The model ingest: dedups on (gateway, epoch, p, s) as the reference ingest does and,
 * when `naturalKey`, on (device, boot, seq) too; refuses a batch holding a poison item
 * (400, the gateway bisects), rejects a `reject` item, and may be told to answer retry
 * for an item (not stored).
 */
export class ModelIngest {
  private readonly byGatewayKey = new Map<string, string>()
  private readonly byNaturalKey = new Set<string>()
  readonly evictedReports: string[] = []
  batches = 0

  private dropOne: boolean

  constructor (private readonly ledger: Ledger, private readonly naturalKey: boolean, private readonly trace: (msg: string) => void = () => {}, dropOne = false) {
    this.dropOne = dropOne
  }

  process (body: Buffer, version: 1 | 2, retry: (nk: string) => boolean, opts: { rejects: boolean } = { rejects: true }): IngestAnswer & { batch: string } {
    const req = version === 2 ? decodeBatchV2(body, { maxItems: 100_000 }) : decodeBatch(body, { maxItems: 100_000 })
    this.batches++
    const items = req.items as unknown[][]
    const kinds = items.map((it) => this.ledger.published.get(nkOf(it[2] as string, it[4], it[3]))?.kind ?? 'ok')
    if (opts.rejects && kinds.includes('poison')) return { status: 400, batch: req.batch }
    const results: ItemResult[] = []
    for (const [i, it] of items.entries()) {
      const [p, s] = it as [number, number]
      const nk = nkOf(it[2] as string, it[4], it[3])
      const gk = `${req.gateway}|${req.epoch}|${p}|${s}`
      if (this.byGatewayKey.has(gk) || (this.naturalKey && this.byNaturalKey.has(nk))) { results.push([p, s, AckCode.Duplicate]); continue }
      if (opts.rejects && kinds[i] === 'reject') { results.push([p, s, AckCode.Rejected, 'the model ingest refuses this reading']); continue }
      if (retry(nk)) { results.push([p, s, AckCode.Retry]); continue }
      if (this.dropOne) { this.dropOne = false; results.push([p, s, AckCode.Stored]); continue } // tampered: answered, never kept
      this.byGatewayKey.set(gk, nk)
      this.byNaturalKey.add(nk)
      this.trace(`ingest stored ${nk} as ${req.gateway} p${p} s${s}`)
      this.ledger.storedUpstream(nk, `${req.gateway} ${req.epoch} p${p} s${s}`)
      results.push([p, s, AckCode.Stored])
    }
    for (const r of req.evicted ?? []) this.evictedReports.push(`${req.gateway}|${req.epoch}|${r.join('-')}`)
    return { status: 200, results, batch: req.batch }
  }
}
