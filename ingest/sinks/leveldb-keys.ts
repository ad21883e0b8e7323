/**
 * Key layout of the leveldb sink (see the header of leveldb.ts for invariants and crash
 * behaviour). Keys are UTF-8 strings that sort in the order the query API returns:
 *
 *   r!{device}!{bootKey}!{seqKey}!{hex(gateway)}!{hex(epoch)}!{p:4 hex}!{s:14 hex}
 *                                            -> reading JSON [p, s, seq, boot, ts, rx, values]
 *   d!{hex(gateway)}!{hex(epoch)}!{p:4 hex}  -> dedup JSON { floor, runs }
 *   e!{hex(gateway)}!{hex(epoch)}!{p:4 hex}  -> evicted JSON { runs }
 *   n!{hex(fleet)}!{device}!{bootKey}!{seq:14 hex}
 *                                            -> {hex(gateway)}!{hex(epoch)}!{p:4 hex}!{s:14 hex}
 *                                               (natural key of a stored reading with a seq, and
 *                                               where that reading is; '' when written by a build
 *                                               that did not record it: its readings are then found
 *                                               by their (device, boot, seq) prefix)
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
 * The natural key is per fleet (types.ts StoreRequest.fleet, undefined = `default`): the same
 * (device, boot, seq) from gateways of two fleets are two readings, from two gateways of one
 * fleet one reading (a device failing over). Layouts 1 and 2 had no fleet in it; their
 * readings are indexed under fleet `default` on upgrade (leveldb.ts `upgradeNaturalKeys`).
 * Device ids match ^[A-Za-z0-9._-]{1,64}$ (no `!`); gateway ids, epochs and fleets are
 * free text to the sink, so they are hex-encoded to keep the key unambiguous. 14 hex digits hold any integer
 * below 2^53.
 */
import type { Boot, Values } from '../../protocol/index.ts'
import type { ReadingCopy, StoredReading } from './types.ts'
import { ValidationError } from '../../protocol/index.ts'

/**
 * 1: readings, dedup, evicted, stats. 2: plus the natural-key index n!{device}!... (built
 * from r! on open). 3: the n! key starts with the fleet (layout 2's keys are rewritten under
 * fleet `default` on open, layout 1's built from r! the same way).
 */
export const FORMAT_VERSION = '3'
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

/**
 * Natural key of a reading with a device seq: a second copy through any gateway or epoch of
 * the same fleet has the same one; a copy from another fleet does not.
 */
export const naturalKey = (fleet: string, device: string, boot: Boot | null, seq: number): string => `n!${hex(fleet)}!${device}!${bootKey(boot)}!${u14(seq)}`

/** The natural key, under `fleet`, of a stored reading's key, or null when it has no seq (layout 1 -> 3 upgrade). */
export function naturalKeyOfReadingKey (key: string, fleet: string): string | null {
  const parts = key.split('!')
  const sk = parts[3]
  return sk !== undefined && sk.startsWith('0') ? `n!${hex(fleet)}!${parts[1]}!${parts[2]}!${sk.slice(1)}` : null
}

/** A layout-2 natural key (`n!{device}!{bootKey}!{seq}`, no fleet) under `fleet`, or null if `key` is not one (layout 2 -> 3 upgrade). */
export function naturalKeyOfLayout2 (key: string, fleet: string): string | null {
  const parts = key.split('!')
  return parts.length === 4 && parts[0] === 'n' ? `n!${hex(fleet)}!${parts.slice(1).join('!')}` : null
}

/** The value of a natural key: where its reading is (the reading key's last four fields). */
export const naturalValue = (gwHex: string, epochHex: string, p: number, s: number): string => `${gwHex}!${epochHex}!${u4(p)}!${u14(s)}`

/** `n!{fleet}!{device}!{bootKey}!{seq}` -> `r!{device}!{bootKey}!0{seq}!`: every reading of that (device, boot, seq), of any fleet. */
export function readingsPrefixOfNatural (nk: string): string {
  const [, , device, bk, seq] = nk.split('!')
  return `r!${device!}!${bk!}!0${seq!}!`
}

/** The reading key a natural key's (non-empty) value names. */
export const readingKeyOfNatural = (nk: string, value: string): string => readingsPrefixOfNatural(nk) + value

/** Conflicts sort by fleet, then as readings do, then by the conflicting copy's transport key. */
export const conflictKey = (fleet: string, device: string, boot: Boot | null, seq: number, gwHex: string, epochHex: string, p: number, s: number): string =>
  `c!${hex(fleet)}!${device}!${bootKey(boot)}!${u14(seq)}!${gwHex}!${epochHex}!${u4(p)}!${u14(s)}`

export const partitionSuffix = (gwHex: string, epochHex: string, p: number): string => `${gwHex}!${epochHex}!${u4(p)}`
export const dedupKey = (suffix: string): string => `d!${suffix}`
export const evictedKey = (suffix: string): string => `e!${suffix}`

/**
 * A reading's value holds what the key does not (gateway and epoch come from the key):
 * fewer bytes per item is what bounds the write rate on a small disk.
 */
export function encodeReadingValue (p: number, s: number, seq: number | null, boot: Boot | null, ts: number | null, rx: number, values: Values): string {
  return JSON.stringify([p, s, seq, boot, ts, rx, values])
}

/** The copy a reading key and value hold (for comparing content and recording conflicts). */
export function readingCopyOf (key: string, value: string): ReadingCopy {
  const r = decodeReading(key, value)
  return { gateway: r.gateway, epoch: r.epoch, p: r.p, s: r.s, ts: r.ts, rx: r.rx, values: r.values }
}

export function decodeReading (key: string, value: string): StoredReading {
  const parts = key.split('!')
  const [p, s, seq, boot, ts, rx, values] = JSON.parse(value) as [number, number, number | null, Boot | null, number | null, number, Values]
  return { gateway: unhex(parts[4]!), epoch: unhex(parts[5]!), p, s, seq, boot, ts, rx, values }
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
