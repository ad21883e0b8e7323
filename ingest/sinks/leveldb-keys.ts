/**
 * Key layout of the leveldb sink (see the header of leveldb.ts for invariants and crash
 * behaviour). Keys are UTF-8 strings that sort in the order the query API returns:
 *
 *   r!{device}!{bootKey}!{seqKey}!{hex(gateway)}!{hex(epoch)}!{p:4 hex}!{s:14 hex}
 *                                            -> reading JSON [p, s, seq, boot, ts, rx, values, fleet]
 *   d!{hex(gateway)}!{hex(epoch)}!{p:4 hex}  -> dedup JSON { floor, runs }
 *   e!{hex(gateway)}!{hex(epoch)}!{p:4 hex}  -> evicted JSON { runs }
 *   c!{hex(fleet)}!{device}!{bootKey}!{seq:14 hex}!{hex(gateway)}!{hex(epoch)}!{p:4 hex}!{s:14 hex}
 *                                            -> conflict JSON (types.ts ConflictRecord): a copy of the
 *                                               natural key with other content, and the reading held
 *   s!stats                                   -> stats JSON (global and per gateway)
 *   m!format                                  -> layout version
 *
 * bootKey: `0` no boot, `1{14 hex}` numeric boot, `2{hex(utf8)}` text boot. So readings
 *   without a boot come first, then numeric boots ascending, then text boots in UTF-8 byte
 *   order (hex keeps byte order, and `!` (0x21) sorts below every hex digit, so a shorter
 *   text sorts before its extensions, as bytes do).
 * seqKey: `0{seq:14 hex}` with a device seq, `1{rx:14 hex}` without: within a boot, readings
 *   without a seq follow the seq'd ones, ordered by gateway receive time.
 * The natural key (fleet, device, boot, seq) is the reading key's (device, boot, seq) plus
 * the fleet in its value: the readings of one (device, boot, seq) are one short key range,
 * at most one a fleet (types.ts StoreRequest.fleet, undefined = `default`). Readings written
 * before layout 4 have no fleet in their value: they count for the fleet their gateway has
 * in the ingest's tokens config (leveldb.ts `fleetOf`). Layouts 1 to 3 kept a second key per
 * reading (`n!...`) for the natural key; opening such a store deletes those keys
 * (leveldb-upgrade.ts).
 * Device ids match ^[A-Za-z0-9._-]{1,64}$ (no `!`); gateway ids, epochs and fleets are
 * free text to the sink, so they are hex-encoded to keep the key unambiguous. 14 hex digits hold any integer
 * below 2^53.
 */
import type { Boot, Values } from '../../protocol/index.ts'
import type { ReadingCopy, StoredReading } from './types.ts'
import { ValidationError } from '../../protocol/index.ts'

/**
 * 1: readings, dedup, evicted, stats. 2: plus the natural-key index n!{device}!...  3: the n!
 * key starts with the fleet. 4: no n! index; the reading's value names its fleet, and its key
 * is the natural key's range (1, 2 and 3 are upgraded on open: their n! keys are deleted).
 */
export const FORMAT_VERSION = '4'
export const META_FORMAT_KEY = 'm!format'
export const STATS_KEY = 's!stats'

export const hex = (s: string): string => Buffer.from(s, 'utf8').toString('hex')
export const u14 = (n: number): string => n.toString(16).padStart(14, '0')
export const u4 = (n: number): string => n.toString(16).padStart(4, '0')

export function bootKey (boot: Boot | null): string {
  if (boot === null) return '0'
  if (typeof boot === 'number') return '1' + u14(boot)
  return '2' + hex(boot)
}

export function seqKey (seq: number | null, rx: number): string {
  return seq === null ? '1' + u14(rx) : '0' + u14(seq)
}

export const devicePrefix = (device: string): string => `r!${device}!`
export const bootPrefix = (device: string, boot: Boot | null): string => `r!${device}!${bootKey(boot)}!`

/** Upper bound (exclusive) of every key starting with `prefix` when prefix ends in `!`. */
export const prefixEnd = (prefix: string): string => prefix.slice(0, -1) + '"'

export function readingKey (device: string, boot: Boot | null, seq: number | null, rx: number, gwHex: string, epochHex: string, p: number, s: number): string {
  return `r!${device}!${bootKey(boot)}!${seqKey(seq, rx)}!${gwHex}!${epochHex}!${u4(p)}!${u14(s)}`
}

/** The range of the readings with a device seq of (device, boot): the head of the natural key (leveldb-natural.ts). */
export function seqRange (device: string, boot: Boot | null): { gte: string, lt: string } {
  const b = bootPrefix(device, boot)
  return { gte: b + '0', lt: b + '1' }
}

/** The range of the readings of (device, boot) with seqs from..to, every fleet and gateway. */
export function seqsRange (device: string, boot: Boot | null, from: number, to: number): { gte: string, lt: string } {
  const b = bootPrefix(device, boot)
  return { gte: b + '0' + u14(from), lt: b + '0' + u14(to + 1) }
}

/** The device seq of a reading key that has one. */
export const seqOfKey = (key: string): number => parseInt(key.split('!', 4)[3]!.slice(1), 16)

/** Conflicts sort by fleet, then as readings do, then by the conflicting copy's transport key. */
export const conflictKey = (fleet: string, device: string, boot: Boot | null, seq: number, gwHex: string, epochHex: string, p: number, s: number): string =>
  `c!${hex(fleet)}!${device}!${bootKey(boot)}!${u14(seq)}!${gwHex}!${epochHex}!${u4(p)}!${u14(s)}`

export const partitionSuffix = (gwHex: string, epochHex: string, p: number): string => `${gwHex}!${epochHex}!${u4(p)}`
export const dedupKey = (suffix: string): string => `d!${suffix}`
export const evictedKey = (suffix: string): string => `e!${suffix}`

/**
 * A reading's value holds what the key does not (gateway and epoch come from the key):
 * fewer bytes per item is what bounds the write rate on a small disk. The fleet comes last,
 * so a reader that knows only the first seven fields reads layout 4 values too.
 */
export function encodeReadingValue (p: number, s: number, seq: number | null, boot: Boot | null, ts: number | null, rx: number, values: Values, fleet: string): string {
  return JSON.stringify([p, s, seq, boot, ts, rx, values, fleet])
}

type Fields = [number, number, number | null, Boot | null, number | null, number, Values, string | undefined]

export function decodeReading (key: string, value: string): StoredReading {
  const parts = key.split('!')
  const [p, s, seq, boot, ts, rx, values] = JSON.parse(value) as Fields
  return { gateway: unhex(parts[4]!), epoch: unhex(parts[5]!), p, s, seq, boot, ts, rx, values }
}

/**
 * A stored reading's fleet and copy (for comparing content and recording conflicts);
 * `fleetOf` gives the fleet of a reading written before layout 4 from its gateway.
 */
export function readingCopyOf (key: string, value: string, fleetOf: (gateway: string) => string): { fleet: string, copy: ReadingCopy } {
  const parts = key.split('!')
  const [p, s, , , ts, rx, values, fleet] = JSON.parse(value) as Fields
  const gateway = unhex(parts[4]!)
  return { fleet: fleet ?? fleetOf(gateway), copy: { gateway, epoch: unhex(parts[5]!), p, s, ts, rx, values } }
}

const unhex = (h: string): string => Buffer.from(h, 'hex').toString('utf8')

/** hex(gateway) of a reading key (its fifth `!` field), without decoding the reading. */
export function gatewayHexOfKey (key: string): string {
  return key.split('!', 5)[4]!
}

/**
 * Cursors are the last key returned, base64url-encoded. Opaque to clients; decoding checks
 * it belongs to the device asked for, so a cursor cannot read another device's range.
 */
export function encodeCursor (lastKey: string): string {
  return Buffer.from(lastKey, 'utf8').toString('base64url')
}

export function decodeCursor (cursor: string, device: string): string {
  if (!/^[A-Za-z0-9_-]{1,1024}$/.test(cursor)) throw new ValidationError('cursor', 'not a cursor returned by this API')
  const key = Buffer.from(cursor, 'base64url').toString('utf8')
  if (!key.startsWith(devicePrefix(device))) throw new ValidationError('cursor', 'not a cursor for this device')
  return key
}
