/**
 * The wire formats bench:cbor-size compares on the same readings, each with an encoder and
 * a decoder: JSON (the v1 items as JSON), upstream protocol v1 and v2, and two outside
 * anchors written here from their specifications:
 *
 * - SenML-CBOR (RFC 8428): one record per value, integer labels (bn -2, bt -3, n 0, v 2,
 *   vs 3, vb 4, t 6), the base name (`device:`) and base time (seconds) set once and
 *   repeated only when they change; the reading's seq, boot, rx, p and s travel as extra
 *   records so the pack carries what a v1 item carries.
 * - InfluxDB line protocol: `readings,device=ID,gateway=GW field=value,... ts_ms`, integers
 *   with the `i` suffix, seq/boot/rx/p/s as fields.
 *
 * And the compressions of node:zlib: gzip, deflate (zlib format, HTTP's `deflate`) and
 * brotli at quality 5 (the gateway's `--compression br`).
 */
import { brotliCompressSync, brotliDecompressSync, constants, deflateSync, gzipSync, gunzipSync, inflateSync } from 'node:zlib'
import {
  decodeBatch, decodeBatchV2, decodeUntrusted, encodeBatch, encodeBatchV2, encodeCbor, type BatchItem
} from '../../protocol/index.ts'

export type Env = { gateway: string, epoch: string, batch: string, floors: [number, number][] }
export type Format = { name: string, encode: (env: Env, items: BatchItem[]) => Buffer, decode: (b: Buffer) => unknown }

export const compressions: Record<string, { compress: (b: Buffer) => Buffer, decompress: (b: Buffer) => Buffer }> = {
  gzip: { compress: (b) => gzipSync(b), decompress: (b) => gunzipSync(b) },
  deflate: { compress: (b) => deflateSync(b), decompress: (b) => inflateSync(b) },
  br: { compress: (b) => brotliCompressSync(b, { params: { [constants.BROTLI_PARAM_QUALITY]: 5, [constants.BROTLI_PARAM_SIZE_HINT]: b.length } }), decompress: (b) => brotliDecompressSync(b) }
}

function senml (env: Env, items: BatchItem[]): Buffer {
  const records: Record<number, unknown>[] = []
  let bn: string | null = null
  const bt = (items[0]?.[5] ?? items[0]?.[6] ?? 0) / 1000
  for (const [p, s, device, seq, boot, ts, rx, values] of items) {
    const first: Record<number, unknown> = {}
    if (records.length === 0) first[-3] = bt
    if (bn !== `${device}:`) { bn = `${device}:`; first[-2] = bn }
    const t = ((ts ?? rx) / 1000) - bt
    const recs: Record<number, unknown>[] = []
    for (const [n, v] of Object.entries(values)) {
      const r: Record<number, unknown> = { 0: n }
      if (typeof v === 'number') r[2] = v
      else if (typeof v === 'boolean') r[4] = v
      else r[3] = v
      if (t !== 0) r[6] = t
      recs.push(r)
    }
    if (seq !== null) recs.push({ 0: 'seq', 2: seq })
    if (boot !== null) recs.push(typeof boot === 'number' ? { 0: 'boot', 2: boot } : { 0: 'boot', 3: boot })
    recs.push({ 0: 'rx', 2: rx }, { 0: 'p', 2: p }, { 0: 's', 2: s })
    Object.assign(recs[0]!, first)
    records.push(...recs)
  }
  return encodeCbor(records)
}

const escTag = (s: string): string => s.replace(/[ ,=]/g, (c) => '\\' + c)
const escKey = escTag

function lineProtocol (env: Env, items: BatchItem[]): Buffer {
  const lines: string[] = []
  for (const [p, s, device, seq, boot, ts, rx, values] of items) {
    const fields: string[] = []
    for (const [k, v] of Object.entries(values)) {
      fields.push(`${escKey(k)}=${typeof v === 'number' ? (Number.isInteger(v) ? `${v}i` : String(v)) : typeof v === 'boolean' ? String(v) : JSON.stringify(v)}`)
    }
    if (seq !== null) fields.push(`seq=${seq}i`)
    if (boot !== null) fields.push(typeof boot === 'number' ? `boot=${boot}i` : `boot=${JSON.stringify(boot)}`)
    fields.push(`rx=${rx}i`, `p=${p}i`, `s=${s}i`)
    lines.push(`readings,device=${escTag(device)},gateway=${escTag(env.gateway)} ${fields.join(',')} ${ts ?? rx}`)
  }
  return Buffer.from(lines.join('\n') + '\n')
}

/** A line-protocol reader good enough to cost the decode (no escapes inside quoted strings). */
function parseLineProtocol (b: Buffer): unknown[] {
  return b.toString('utf8').split('\n').filter(Boolean).map((line) => {
    const [head, fields, ts] = line.split(' ')
    const f: Record<string, unknown> = {}
    for (const kv of fields!.split(',')) {
      const i = kv.indexOf('=')
      const v = kv.slice(i + 1)
      f[kv.slice(0, i)] = v.endsWith('i') ? Number(v.slice(0, -1)) : v === 'true' || v === 'false' ? v === 'true' : v.startsWith('"') ? JSON.parse(v) : Number(v)
    }
    return [head, f, Number(ts)]
  })
}

export const formats: Format[] = [
  { name: 'json', encode: (env, items) => Buffer.from(JSON.stringify({ v: 1, ...env, items })), decode: (b) => JSON.parse(b.toString('utf8')) },
  { name: 'v1', encode: (env, items) => encodeBatch({ ...env, items }), decode: (b) => decodeBatch(b, { maxItems: 100_000 }) },
  { name: 'v2', encode: (env, items) => encodeBatchV2(env, items), decode: (b) => decodeBatchV2(b, { maxItems: 100_000 }) },
  { name: 'senml-cbor', encode: (env, items) => senml(env, items), decode: (b) => decodeUntrusted(b, { maxDepth: 4 }) },
  { name: 'influx-lp', encode: (env, items) => lineProtocol(env, items), decode: (b) => parseLineProtocol(b) }
]
