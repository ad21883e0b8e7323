/**
 * Store configuration: the gateway flags the store reads (the gateway's schema spreads
 * this one, so `--data-dir` etc. are validated once, with the rest, at startup).
 */
import { parseConfig, type ConfigOf } from '../../common/index.ts'

export const storeSchema = {
  dataDir: { type: 'string', default: './data/gateway', doc: 'LevelDB store directory' },
  partitions: { type: 'int', default: 8, min: 1, max: 1024, doc: 'Partitions of a new store (fixed at creation)' },
  durability: { type: 'enum', values: ['process', 'power'] as const, default: 'power', doc: 'process: survive kill -9 (no fsync); power: fsync every group commit' },
  commitIntervalMs: { type: 'int', default: 20, min: 0, max: 1000, doc: 'With --durability power: least time between two fsynced group commits; under load each fsync then carries more readings (less flash wear) for up to this much more PUBACK latency' },
  leveldbWriteBufferBytes: { type: 'int', default: 1024 ** 2, min: 64 * 1024, max: 256 * 1024 ** 2, doc: 'LevelDB memtable size (memory; size of each level-0 table)' },
  leveldbCacheBytes: { type: 'int', default: 2 * 1024 ** 2, min: 0, max: 1024 ** 3, doc: 'LevelDB block cache (memory)' },
  leveldbBlockBytes: { type: 'int', default: 4096, min: 1024, max: 1024 ** 2, doc: 'LevelDB table block size' },
  leveldbCompression: { type: 'bool', default: true, doc: 'Snappy-compress LevelDB tables' },
  maxBufferItems: { type: 'int', default: 10_000_000, min: 1, doc: 'Buffer quota in items (readings on disk not yet stored upstream); see --full-policy' },
  maxBufferBytes: { type: 'int', default: 2 * 1024 ** 3, min: 1024, doc: 'Buffer quota in bytes' },
  fullPolicy: { type: 'enum', values: ['block', 'drop-oldest'] as const, default: 'block', doc: 'When the buffer is full: stop acknowledging, or evict the oldest items (reported upstream)' },
  maxDlqItems: { type: 'int', default: 100_000, min: 1, doc: 'Dead-letter store quota in records; past it the oldest records are dropped (counted and logged)' },
  maxDlqBytes: { type: 'int', default: 128 * 1024 ** 2, min: 1024, doc: 'Dead-letter store quota in bytes (record plus key); past it the oldest records are dropped' },
  dedupIdleForgetMs: { type: 'int', default: 7 * 24 * 3600 * 1000, min: 1000, doc: 'A device that sent no new reading for this long loses its dedup state (memory and disk); its next readings are taken as new (docs/store.md)' },
  dedupCacheDevices: { type: 'int', default: 100000, min: 16, doc: 'Dedup windows kept in memory (others reload from disk)' },
  maxDedupDevices: { type: 'int', default: 100_000, min: 16, max: 100_000_000, doc: 'Dedup windows kept on disk (one per device that sends seq); past it the least recently used is evicted and its device\'s older retransmits are stored again (docs/store.md)' }
} as const

export type StoreConfig = ConfigOf<typeof storeSchema>

/** Every store flag at its default (tests and tools that open a store on their own). */
export function storeDefaults (): StoreConfig {
  return parseConfig(storeSchema, { argv: [], env: {}, envPrefix: 'GATEWAY' })
}
