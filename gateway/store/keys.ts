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
 *   k!{commandId}                      a command to a device and its state (gateway/commands/store.ts)
 */
/** The kinds of key by their prefix; every prefix is spelled here and nowhere else. */
const PREFIX = { meta: 'm!', counter: 'c!', item: 'i!', dedup: 'd!', evicted: 'e!', dlq: 'x!', quarantine: 'q!', command: 'k!' } as const
export type KeyKind = keyof typeof PREFIX
const KIND_OF = new Map<string, KeyKind>(Object.entries(PREFIX).map(([kind, prefix]) => [prefix, kind as KeyKind]))
const PREFIX_LENGTH = 2

const pad4 = (n: number): string => n.toString().padStart(4, '0')
const ZEROS = '0000000000000000'
/** As padStart(16, '0'), without its intermediate strings (two keys per reading). */
const pad16 = (n: number): string => { const t = String(n); return t.length >= 16 ? t : ZEROS.slice(t.length) + t }
/** `i!PPPP!` per partition, built once */
const itemPrefixes: string[] = []
const itemPrefix = (p: number): string => (itemPrefixes[p] ??= `${PREFIX.item}${pad4(p)}!`)
/** Every key that starts with `prefix`. */
const range = (prefix: string): { gt: string, lt: string } => ({ gt: prefix, lt: prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1) })

export const K = {
  epoch: `${PREFIX.meta}epoch`,
  partitions: `${PREFIX.meta}partitions`,
  version: `${PREFIX.meta}version`,
  dlqMeta: `${PREFIX.meta}dlq`,
  counter: (p: number): string => `${PREFIX.counter}${pad4(p)}`,
  item: (p: number, s: number): string => itemPrefix(p) + pad16(s),
  itemPrefix,
  itemEnd: (p: number): string => `${PREFIX.item}${pad4(p)}"`, // '"' sorts right after '!'
  dedup: (device: string): string => `${PREFIX.dedup}${device}`,
  evicted: (p: number, from: number): string => `${PREFIX.evicted}${pad4(p)}!${pad16(from)}`,
  dlq: (id: number): string => `${PREFIX.dlq}${pad16(id)}`,
  quarantine: (id: number): string => `${PREFIX.quarantine}${pad16(id)}`,
  command: (id: string): string => `${PREFIX.command}${id}`,
  /** The command id of a command record's key. */
  idOfCommand: (key: string): string => key.slice(PREFIX_LENGTH),
  range,
  /** Every key of one kind (`K.all('dedup')`: every dedup window). */
  all: (kind: KeyKind): { gt: string, lt: string } => range(PREFIX[kind]),
  /** The kind of a key, null for a key of no kind this layout knows. */
  kindOf: (key: string): KeyKind | null => KIND_OF.get(key.slice(0, PREFIX_LENGTH)) ?? null,
  isDedup: (key: string): boolean => key.startsWith(PREFIX.dedup),
  /** The device id of a dedup window's key. */
  deviceOfDedup: (key: string): string => key.slice(PREFIX_LENGTH),
  /** The partition of a counter's key. */
  partitionOfCounter: (key: string): number => Number(key.slice(PREFIX_LENGTH)),
  /** The partition of an item's key. */
  partitionOfItem: (key: string): number => Number(key.slice(PREFIX_LENGTH, PREFIX_LENGTH + 4)),
  /** The id of a dead-letter record's or a quarantined entry's key (its last 16 characters). */
  idOf: (key: string): number => Number(key.slice(-16))
} as const

/** The seq of an item key (its last 16 characters). */
export function seqOfItemKey (key: string): number {
  return Number(key.slice(-16))
}

export function parseEvictedKey (key: string): { p: number, from: number } {
  return { p: Number(key.slice(PREFIX_LENGTH, PREFIX_LENGTH + 4)), from: Number(key.slice(PREFIX_LENGTH + 5)) }
}
