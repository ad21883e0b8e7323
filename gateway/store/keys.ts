/**
 * LevelDB key layout of the gateway store (utf8 keys, binary values). Fixed-width decimal
 * numbers so keys sort numerically.
 *
 *   m!epoch, m!partitions, m!version   store identity, written once at creation
 *   m!dlq                              CBOR [nextId, count] of the dead-letter store
 *   c!PPPP                             CBOR [nextSeq, items, bytes] of partition P
 *   i!PPPP!SSSSSSSSSSSSSSSS            one buffered item: its wire CBOR (8-element array)
 *   d!{deviceId}                       dedup window of a device (dedup.ts)
 *   e!PPPP!FFFFFFFFFFFFFFFF            evicted range [from, to] not yet reported upstream
 *   x!NNNNNNNNNNNNNNNN                 dead-letter record (CBOR map with reason and raw bytes)
 *   q!NNNNNNNNNNNNNNNN                 quarantined entry that could not be read at all
 */
const pad4 = (n: number): string => n.toString().padStart(4, '0')
const ZEROS = '0000000000000000'
/** As padStart(16, '0'), without its intermediate strings (two keys per reading). */
const pad16 = (n: number): string => { const t = String(n); return t.length >= 16 ? t : ZEROS.slice(t.length) + t }
/** `i!PPPP!` per partition, built once */
const itemPrefixes: string[] = []
const itemPrefix = (p: number): string => (itemPrefixes[p] ??= `i!${pad4(p)}!`)

export const K = {
  epoch: 'm!epoch',
  partitions: 'm!partitions',
  version: 'm!version',
  dlqMeta: 'm!dlq',
  counter: (p: number): string => `c!${pad4(p)}`,
  item: (p: number, s: number): string => itemPrefix(p) + pad16(s),
  itemPrefix,
  itemEnd: (p: number): string => `i!${pad4(p)}"`, // '"' sorts right after '!'
  dedup: (device: string): string => `d!${device}`,
  evicted: (p: number, from: number): string => `e!${pad4(p)}!${pad16(from)}`,
  dlq: (id: number): string => `x!${pad16(id)}`,
  quarantine: (id: number): string => `q!${pad16(id)}`,
  range: (prefix: string): { gt: string, lt: string } => ({ gt: prefix, lt: prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1) })
} as const

/** The seq of an item key (its last 16 characters). */
export function seqOfItemKey (key: string): number {
  return Number(key.slice(-16))
}

export function parseEvictedKey (key: string): { p: number, from: number } {
  return { p: Number(key.slice(2, 6)), from: Number(key.slice(7)) }
}
