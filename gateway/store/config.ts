/**
 * Store configuration: the gateway flags the store reads (the gateway's schema spreads
 * this one, so `--data-dir` etc. are validated once, with the rest, at startup).
 */
import type { ConfigOf } from '../../protocol/index.ts'

export const storeSchema = {
  dataDir: { type: 'string', default: './data/gateway', doc: 'LevelDB store directory' },
  partitions: { type: 'int', default: 8, min: 1, max: 1024, doc: 'Partitions of a new store (fixed at creation)' },
  durability: { type: 'enum', values: ['process', 'power'] as const, default: 'power', doc: 'process: survive kill -9 (no fsync); power: fsync every group commit' },
  maxBufferItems: { type: 'int', default: 10_000_000, min: 1, doc: 'Buffer quota in items' },
  maxBufferBytes: { type: 'int', default: 2 * 1024 ** 3, min: 1024, doc: 'Buffer quota in bytes' },
  fullPolicy: { type: 'enum', values: ['block', 'drop-oldest'] as const, default: 'block', doc: 'When the buffer is full: stop acknowledging, or evict the oldest items (reported upstream)' }
} as const

export type StoreConfig = ConfigOf<typeof storeSchema>
