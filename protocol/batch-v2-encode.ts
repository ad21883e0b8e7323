/**
 * The encoder of upstream protocol v2 (layout: batch-v2.ts, docs/protocol-v2.md): the
 * gateway's batch as columns, in the CBOR writer's shortest exact forms.
 */
import { CborWriter, float16Bits } from './cbor-writer.ts'
import type { BatchEnvelope, BatchItem } from './batch.ts'
import { decimalScale, decimalValue, MAX_MANTISSA, POW10 } from './decimal.ts'
import type { Boot } from './reading.ts'

export const PROTOCOL_V2 = 2 as const

type Env = Omit<BatchEnvelope, 'v'>

function runs (w: CborWriter, values: readonly number[], consecutive: boolean): void {
  const flat: number[] = []
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!
    const last = flat.length - 2
    if (last >= 0 && v === (consecutive ? flat[last]! + flat[last + 1]! : flat[last]!)) flat[last + 1]!++
    else flat.push(v, 1)
  }
  w.array(flat.length)
  for (const x of flat) w.int(x)
}

function boot (w: CborWriter, b: Boot | null): void {
  if (b === null) w.null()
  else if (typeof b === 'number') w.int(b)
  else w.text(b)
}

function intLen (n: number): number {
  const a = n < 0 ? -1 - n : n
  return a < 24 ? 1 : a < 0x100 ? 2 : a < 0x10000 ? 3 : a <= 0xffffffff ? 5 : 9
}

/** One value of a raw column in its shortest exact form. */
function rawValue (w: CborWriter, v: number | boolean | string): void {
  if (typeof v === 'boolean') { w.bool(v); return }
  if (typeof v === 'string') { w.text(v); return }
  if (Number.isSafeInteger(v) && !Object.is(v, -0)) { w.int(v); return }
  const floatLen = float16Bits(v) >= 0 ? 3 : Math.fround(v) === v ? 5 : 9
  const k = decimalScale(v)
  if (k > 0) {
    const m = Math.round(v * POW10[k]!)
    if (2 + intLen(m) < floatLen) { w.array(2).int(k).int(m); return }
  }
  w.float(v)
}

function sameNames (a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

type Column = { vals: (number | boolean | string)[], devs: number[] }

function column (w: CborWriter, c: Column): void {
  const { vals, devs } = c
  if (vals.every((v) => typeof v === 'boolean')) {
    const bits = new Uint8Array((vals.length + 7) >> 3)
    for (let i = 0; i < vals.length; i++) if (vals[i]) bits[i >> 3]! |= 1 << (i & 7)
    w.array(2).int(0).bytes(bits)
    return
  }
  if (vals.every((v) => typeof v === 'number')) {
    // one scale for the column (the largest any value needs), then the mantissas at that
    // scale; the few values it cannot hold exactly go as escapes
    let k = 0
    let scale = 1
    for (const v of vals as number[]) {
      if (Math.round(v * scale) / scale === v) continue // fits the scale so far (-0 is sorted out below)
      const kv = decimalScale(v)
      if (kv > k) { k = kv; scale = POW10[k]! }
    }
    let escapes = 0
    const ms: (number | null)[] = []
    for (const v of vals as number[]) {
      const m = Math.round(v * scale)
      const ok = !Object.is(v, -0) && Math.abs(m) < MAX_MANTISSA && Object.is(decimalValue(m, k), v)
      ms.push(ok ? m : null)
      if (!ok) escapes++
    }
    if (escapes * 8 <= vals.length) {
      w.array(2 + ms.length).int(1).int(k)
      const last = new Map<number, number>()
      let first = 0
      for (let i = 0; i < ms.length; i++) {
        const m = ms[i] as number | null // i < ms.length; null marks an escape
        if (m === null) { w.array(1); rawValue(w, vals[i] as number); continue }
        const d = devs[i]!
        const prev = last.get(d)
        w.int(m - (prev ?? first))
        if (prev === undefined) first = m
        last.set(d, m)
      }
      return
    }
  }
  w.array(1 + vals.length).int(2)
  for (const v of vals) rawValue(w, v)
}

/** Encodes a batch as protocol v2. Items must be valid v1 items (the gateway's own). */
export function encodeBatchV2 (env: Env, items: readonly BatchItem[]): Buffer {
  const n = items.length
  const devIndex = new Map<string, number>()
  const devBoot: (Boot | null)[] = []
  const curBoot: (Boot | null)[] = []
  const lastSeq: (number | undefined)[] = []
  const di: number[] = new Array(n)
  const bootAt: (number | Boot | null)[] = []
  const nameIndex = new Map<string, number>()
  const cols: Column[] = []
  const shapeIndex = new Map<string, number>()
  const shapes: number[][] = []
  const shapeNames: string[][] = []
  const devShape: number[] = []
  const curShape: number[] = []
  const shapeAt: number[] = []
  const w = new CborWriter(64 + n * 24)
  const evicted = env.evicted && env.evicted.length > 0 ? env.evicted : null
  w.map(evicted ? 21 : 20)
  w.text('v').int(PROTOCOL_V2)
  w.text('gateway').text(env.gateway)
  w.text('epoch').text(env.epoch)
  w.text('batch').text(env.batch)
  w.text('floors').array(env.floors.length)
  for (const [p, s] of env.floors) w.array(2).int(p).int(s)
  if (evicted) {
    w.text('evicted').array(evicted.length)
    for (const [p, a, b] of evicted) w.array(3).int(p).int(a).int(b)
  }
  w.text('n').int(n)
  w.text('p'); runs(w, items.map((it) => it[0]), false)
  w.text('s'); runs(w, items.map((it) => it[1]), true)
  for (let i = 0; i < n; i++) {
    const it = items[i]!
    let d = devIndex.get(it[2])
    if (d === undefined) {
      d = devIndex.size
      devIndex.set(it[2], d)
      devBoot.push(it[4])
      curBoot.push(it[4])
      lastSeq.push(undefined)
    } else if (curBoot[d] !== it[4]) {
      curBoot[d] = it[4]
      bootAt.push(i, it[4])
    }
    di[i] = d
    const values = it[7]
    const names = Object.keys(values)
    // most readings have the names their device's last one had: compare before building a key
    let sh = d < curShape.length ? curShape[d]! : -1
    if (sh < 0 || !sameNames(shapeNames[sh]!, names)) {
      const ids: number[] = []
      for (const name of names) {
        let c = nameIndex.get(name)
        if (c === undefined) { c = nameIndex.size; nameIndex.set(name, c); cols.push({ vals: [], devs: [] }) }
        ids.push(c)
      }
      const key = ids.join(',')
      sh = shapeIndex.get(key) ?? -1
      if (sh < 0) { sh = shapes.length; shapeIndex.set(key, sh); shapes.push(ids); shapeNames.push(names) }
    }
    const ids = shapes[sh]!
    for (let j = 0; j < ids.length; j++) {
      const col = cols[ids[j]!]!
      col.vals.push(values[names[j]!]!)
      col.devs.push(d)
    }
    if (curShape.length <= d) { devShape.push(sh); curShape.push(sh) } else if (curShape[d] !== sh) { curShape[d] = sh; shapeAt.push(i, sh) }
  }
  w.text('dev').array(devIndex.size)
  for (const id of devIndex.keys()) w.text(id)
  w.text('di').array(n)
  for (const d of di) w.int(d)
  w.text('boot').array(devBoot.length)
  for (const b of devBoot) boot(w, b)
  w.text('bootAt').array(bootAt.length)
  for (let i = 0; i < bootAt.length; i += 2) { w.int(bootAt[i] as number); boot(w, bootAt[i + 1] as Boot | null) }
  w.text('seq').array(n)
  let firstSeq = 0
  for (let i = 0; i < n; i++) {
    const seq = items[i]![3]
    if (seq === null) { w.null(); continue }
    const prev = lastSeq[di[i]!]
    w.int(seq - (prev ?? firstSeq))
    if (prev === undefined) firstSeq = seq
    lastSeq[di[i]!] = seq
  }
  w.text('rx').array(n)
  let prevRx = 0
  for (const it of items) { w.int(it[6] - prevRx); prevRx = it[6] }
  const lastSkew = new Array<number | undefined>(devIndex.size).fill(undefined)
  const tsCol: (number | null)[] = new Array(n)
  let safe = true
  let firstSkew = 0
  for (let i = 0; i < n; i++) {
    const it = items[i]!
    if (it[5] === null) { tsCol[i] = null; continue }
    const skew = it[5] - it[6]
    const prev = lastSkew[di[i]!]
    tsCol[i] = skew - (prev ?? firstSkew)
    if (prev === undefined) firstSkew = skew
    if (!Number.isSafeInteger(tsCol[i])) safe = false
    lastSkew[di[i]!] = skew
  }
  w.text(safe ? 'ts' : 'tsRx').array(n)
  for (let i = 0; i < n; i++) {
    const ts = items[i]![5]
    if (ts === null) w.null()
    else w.int(safe ? tsCol[i]! : ts - items[i]![6])
  }
  w.text('names').array(nameIndex.size)
  for (const name of nameIndex.keys()) w.text(name)
  w.text('shapes').array(shapes.length)
  for (const ids of shapes) { w.array(ids.length); for (const c of ids) w.int(c) }
  w.text('devShape').array(devShape.length)
  for (const sh of devShape) w.int(sh)
  w.text('shapeAt').array(shapeAt.length)
  for (const x of shapeAt) w.int(x)
  w.text('cols').array(cols.length)
  for (const c of cols) column(w, c)
  return w.finish()
}
