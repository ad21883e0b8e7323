/**
 * `gateway check`: verifies a stopped gateway's store against the invariants of the store's
 * header (index.ts) and key layout (keys.ts), reading every key once. Each problem is one
 * sentence naming the partition, seq, device or record; none means the store is consistent.
 *
 *   identity     m!epoch and m!partitions readable
 *   counters     every item key of partition p is below p's counter (a seq is never
 *                reused); the counter's item count and bytes equal the items on disk
 *   items        readable, and carrying the (p, s) of their key
 *   evicted      from <= to, below the counter, no item inside, ranges of a partition
 *                disjoint
 *   dead letters m!dlq's count and bytes equal the records; every record id below its
 *                nextId; every record readable, with a reason
 *   windows      readable; every buffered item of a device that sends seq is claimed by
 *                the device's window when the window covers its seq (an item the window
 *                does not claim would be stored again on a resend); and a window does not
 *                claim seqs above its device's newest item where the disk proves their
 *                items were never written (below)
 *
 * A window ahead of its items (a claimed seq whose item was never written: its resend
 * would be acknowledged as a duplicate and lost) is mostly invisible on disk, since items
 * leave the store once stored upstream and "delivered" looks like "never written". One
 * case is decidable: the device's newest item on disk (seq k) holds its partition's last
 * seq (counter - 1), the window saw seqs below k, and no seq above k was ever skipped (the
 * window's gapMax < k): the seqs above k then arrived after it and got higher partition
 * seqs, at or above the counter, which no batch wrote.
 * The acknowledgment-path simulation checks the general case with the whole history
 * (test/sim/oracle.ts) and runs this checker after every crash.
 */
import { decodeCommandRecord } from '../commands/store.ts'
import { decodeUntrusted } from '../../protocol/index.ts'
import type { Db } from './db.ts'
import { DedupWindow } from './dedup.ts'
import { dlqRecordBytes } from './dead-letters.ts'
import { K, parseEvictedKey, seqOfItemKey } from './keys.ts'
import { itemCost } from './partition.ts'
import { readCounter } from './recover.ts'

/** What the check found: `store` false when the directory holds no gateway store at all. */
export type CheckReport = { store: boolean, problems: string[], summary: { partitions: number, items: number, deadLetters: number, windows: number, evictedRanges: number } }

const META = new Set<string>([K.epoch, K.partitions, K.version, K.dlqMeta])
const MAX_LISTED = 50

type ItemRef = { p: number, s: number, seq: number, boot: string | number | null, rx: number }

/** `dedupIdleForgetMs`: the gateway's setting (a window forgotten by idle time starts afresh). */
export type CheckOptions = { dedupIdleForgetMs: number }

/** Checks the store in `db` (opened, not written to). */
export async function checkReport (db: Db, opts: CheckOptions): Promise<CheckReport> {
  const problems: string[] = []
  const summary = { partitions: 0, items: 0, deadLetters: 0, windows: 0, evictedRanges: 0 }
  const say = (msg: string): void => { problems.push(msg) }
  const epoch = await db.get(K.epoch)
  const partsBuf = await db.get(K.partitions)
  if (epoch === undefined && partsBuf === undefined) return { store: false, problems: [`no gateway store here (no ${K.epoch}, no ${K.partitions})`], summary }
  const partitions = Number(partsBuf?.toString())
  if (epoch === undefined || !/^[A-Za-z0-9_-]{8,64}$/.test(epoch.toString())) say(`the store identity ${K.epoch} is missing or unreadable`)
  if (!Number.isInteger(partitions) || partitions < 1) say(`the store identity ${K.partitions} is missing or unreadable`)
  summary.partitions = Number.isInteger(partitions) ? partitions : 0

  const counters = new Map<number, [number, number, number]>()
  const items = new Map<number, { n: number, bytes: number, seqs: number[] }>()
  const byDevice = new Map<string, ItemRef[]>()
  const evicted: Array<{ p: number, from: number, to: number }> = []
  const windows = new Map<string, DedupWindow>()
  let dlqMeta: [number, number, number] | null = null
  let dlqCount = 0
  let dlqBytes = 0
  let dlqMaxId = -1

  for await (const [k, v] of db.iterator()) {
    const kind = K.kindOf(k)
    if (kind === null) { say(`unknown key ${JSON.stringify(k.slice(0, 40))}`); continue }
    if (kind === 'meta') {
      if (!META.has(k)) say(`unknown key ${JSON.stringify(k)}`)
      else if (k === K.dlqMeta) {
        const d = safeDecode(v)
        if (Array.isArray(d) && d.length === 3 && d.every((x) => Number.isSafeInteger(x) && x >= 0)) dlqMeta = d as [number, number, number]
        else say(`the dead-letter counter ${K.dlqMeta} is unreadable`)
      }
    } else if (kind === 'counter') {
      const p = K.partitionOfCounter(k)
      const c = readCounter(v)
      if (!c) say(`partition ${p}: counter unreadable`)
      else counters.set(p, c)
    } else if (kind === 'item') {
      const p = K.partitionOfItem(k)
      const s = seqOfItemKey(k)
      let it = items.get(p)
      if (!it) { it = { n: 0, bytes: 0, seqs: [] }; items.set(p, it) }
      it.n++; it.bytes += itemCost(v.length); it.seqs.push(s)
      summary.items++
      const item = safeDecode(v)
      if (!Array.isArray(item) || item.length !== 8) { say(`partition ${p} seq ${s}: item unreadable`); continue }
      if (item[0] !== p || item[1] !== s) say(`partition ${p} seq ${s}: the item says partition ${String(item[0])} seq ${String(item[1])}`)
      const [device, seq, boot] = [item[2], item[3], item[4]]
      if (typeof device === 'string' && typeof seq === 'number') {
        let l = byDevice.get(device)
        if (!l) { l = []; byDevice.set(device, l) }
        l.push({ p, s, seq, boot: boot as string | number | null, rx: typeof item[6] === 'number' ? item[6] : 0 })
      }
    } else if (kind === 'evicted') {
      const { p, from } = parseEvictedKey(k)
      const to = safeDecode(v)
      if (typeof to !== 'number') { say(`partition ${p}: evicted range from seq ${from} unreadable`); continue }
      evicted.push({ p, from, to })
      summary.evictedRanges++
    } else if (kind === 'dlq') {
      const id = K.idOf(k)
      dlqCount++; dlqBytes += dlqRecordBytes(v); dlqMaxId = Math.max(dlqMaxId, id)
      const rec = safeDecode(v, 3) as { reason?: unknown } | null
      if (rec === null || typeof rec !== 'object' || typeof rec.reason !== 'string' || rec.reason === '') say(`dead letter ${id}: unreadable or without a reason`)
    } else if (kind === 'command') {
      try { decodeCommandRecord(v) } catch (err) { say(`command ${K.idOfCommand(k)}: record unreadable (${(err as Error).message})`) }
    } else if (kind === 'dedup') {
      const device = K.deviceOfDedup(k)
      try { windows.set(device, DedupWindow.decode(v)); summary.windows++ } catch (err) { say(`device ${device}: dedup window unreadable (${(err as Error).message})`) }
    }
  }
  summary.deadLetters = dlqCount

  // counters against the items on disk
  for (const [p, it] of items) {
    if (Number.isInteger(partitions) && p >= partitions) say(`partition ${p}: ${it.n} items in a partition the store does not have (it has ${partitions})`)
    const c = counters.get(p)
    if (!c) { say(`partition ${p}: ${it.n} items and no counter`); continue }
    const above = it.seqs.filter((s) => s >= c[0])
    if (above.length) say(`partition ${p}: item seq ${above.slice(0, 5).join(', ')}${above.length > 5 ? ' ...' : ''} at or above the partition counter ${c[0]} (a seq could be reused)`)
    if (c[1] !== it.n) say(`partition ${p}: counter says ${c[1]} items, ${it.n} on disk`)
    if (c[2] !== it.bytes) say(`partition ${p}: counter says ${c[2]} bytes, ${it.bytes} on disk`)
  }
  for (const [p, c] of counters) {
    if (!items.has(p) && (c[1] !== 0 || c[2] !== 0)) say(`partition ${p}: counter says ${c[1]} items and ${c[2]} bytes, none on disk`)
  }

  // evicted ranges
  const byPart = new Map<number, Array<{ from: number, to: number }>>()
  for (const e of evicted) {
    if (e.from > e.to) say(`partition ${e.p}: evicted range ${e.from}-${e.to} ends before it starts`)
    const c = counters.get(e.p)
    if (c && e.to >= c[0]) say(`partition ${e.p}: evicted range ${e.from}-${e.to} reaches the counter ${c[0]} (seqs never allocated)`)
    const inside = items.get(e.p)?.seqs.filter((s) => s >= e.from && s <= e.to) ?? []
    if (inside.length) say(`partition ${e.p}: evicted range ${e.from}-${e.to} holds items still on disk (seq ${inside.slice(0, 5).join(', ')})`)
    let l = byPart.get(e.p)
    if (!l) { l = []; byPart.set(e.p, l) }
    l.push(e)
  }
  for (const [p, l] of byPart) {
    l.sort((a, b) => a.from - b.from)
    for (let i = 1; i < l.length; i++) if (l[i]!.from <= l[i - 1]!.to) say(`partition ${p}: evicted ranges ${l[i - 1]!.from}-${l[i - 1]!.to} and ${l[i]!.from}-${l[i]!.to} overlap`)
  }

  // dead letters
  if (dlqMeta) {
    if (dlqMeta[1] !== dlqCount) say(`dead letters: m!dlq says ${dlqMeta[1]} records, ${dlqCount} on disk`)
    if (dlqMeta[2] !== dlqBytes) say(`dead letters: m!dlq says ${dlqMeta[2]} bytes, ${dlqBytes} on disk`)
    if (dlqMaxId >= dlqMeta[0]) say(`dead letters: record ${dlqMaxId} at or above the next id ${dlqMeta[0]} (an id could be reused)`)
  } else if (dlqCount > 0) say(`dead letters: ${dlqCount} records and no m!dlq counter`)

  // windows against the items they must claim
  let listed = 0
  for (const [device, refs] of byDevice) {
    const w = windows.get(device)
    if (!w) continue // evicted or forgotten: its device's readings are at least once (docs/store.md)
    const marks = w.bootMarks()
    for (const r of refs) {
      const m = marks.find((b) => b.boot === r.boot)
      if (!m || r.seq < m.low || m.hw - r.seq >= w.window) continue
      // the device went quiet for longer than dedupIdleForgetMs after this item: its window
      // was forgotten and started afresh, and this item may be stored again (docs/store.md)
      if (w.seenAtS > 0 && w.seenAtS * 1000 - r.rx > opts.dedupIdleForgetMs) continue
      if (r.seq > m.hw || !w.claims(r.boot, r.seq)) {
        if (listed++ < MAX_LISTED) say(`device ${device}: buffered item (partition ${r.p} seq ${r.s}) of boot ${JSON.stringify(r.boot)} seq ${r.seq} is not claimed by the device's dedup window (high-water ${m.hw}): a resend would be stored twice (unless the window was evicted by --max-dedup-devices and started afresh)`)
      }
    }
  }
  // windows ahead of their items, where the disk can tell (header)
  for (const [device, refs] of byDevice) {
    const w = windows.get(device)
    if (!w) continue
    for (const m of w.bootMarks()) {
      let newest: ItemRef | null = null
      for (const r of refs) if (r.boot === m.boot && (newest === null || r.seq > newest.seq)) newest = r
      // low < k: k was not the window's first seq (a window that began above k and then
      // got k lowers `low` to k without recording a gap)
      if (newest === null || m.hw <= newest.seq || m.gapMax >= newest.seq || m.low >= newest.seq) continue
      const c = counters.get(newest.p)
      if (c && newest.s === c[0] - 1) say(`device ${device}: dedup window claims boot ${JSON.stringify(m.boot)} seq ${newest.seq + 1}${m.hw > newest.seq + 1 ? `-${m.hw}` : ''} above its newest item (seq ${newest.seq}, partition ${newest.p} seq ${newest.s}, the partition's last), whose items were never written: a resend would be acknowledged as a duplicate and lost`)
    }
  }
  if (listed > MAX_LISTED) say(`... and ${listed - MAX_LISTED} more items not claimed by their windows`)
  return { store: true, problems, summary }
}

/** The problems only (the simulation's form). */
export async function checkStore (db: Db, opts: CheckOptions): Promise<string[]> {
  return (await checkReport(db, opts)).problems
}

function safeDecode (v: Uint8Array, maxDepth = 4): unknown {
  try { return decodeUntrusted(v, { maxDepth }) } catch { return null }
}
