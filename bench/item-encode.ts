/**
 * Cost of encoding one upstream item at intake: the hand-written encoder
 * (protocol/item-encoder.ts) against cbor-x's general encoder, on a decoded reading, with
 * its values as the decoder returns them (a plain object) and as a null-prototype copy
 * (what validateValues used to return).
 *
 *   node --import tsx bench/item-encode.ts [--items 500000] [--rounds 3]
 */
import { decodeReading, encodeCbor, encodeItemFast, encodeItemGeneric, type Values } from '../protocol/index.ts'
import { helpText, num, parseFlags, type FlagSpec } from './lib/args.ts'

const FLAGS: FlagSpec = {
  items: { type: 'number', default: 500_000, doc: 'items encoded per measurement' },
  rounds: { type: 'number', default: 3, doc: 'rounds (the first one warms up the JIT)' }
}

function nsPerItem (n: number, fn: (i: number) => Buffer): number {
  let sink = 0
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) sink += fn(i).length
  const ns = Number(process.hrtime.bigint() - t0) / n
  if (sink === 0) throw new Error('nothing encoded')
  return ns
}

function main (): void {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(helpText(FLAGS) + '\n'); return }
  const n = num(f, 'items')
  const r = decodeReading(encodeCbor({ seq: 12345, boot: 3, ts: BigInt(1764232000123), values: { t: 21.53, h: 40.1 } }), 4096)
  const nullProto = Object.assign(Object.create(null) as Values, r.values)
  const rx = 1764232000456
  for (let round = 1; round <= num(f, 'rounds'); round++) {
    const fast = nsPerItem(n, (i) => encodeItemFast(3, i, 'dev-0001', r.seq, r.boot, r.ts, rx, r.values))
    const generic = nsPerItem(n, (i) => encodeItemGeneric([3, i, 'dev-0001', r.seq, r.boot, r.ts, rx, r.values]))
    const genericNull = nsPerItem(n, (i) => encodeItemGeneric([3, i, 'dev-0001', r.seq, r.boot, r.ts, rx, nullProto]))
    process.stdout.write(`round ${round}: item encoder ${fast.toFixed(0)} ns, cbor-x ${generic.toFixed(0)} ns, cbor-x on null-prototype values ${genericNull.toFixed(0)} ns per item\n`)
  }
}

main()
