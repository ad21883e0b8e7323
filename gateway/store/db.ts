/** The store's LevelDB handle types (utf8 keys, binary values). */
import type { ChainedBatch, Level } from 'level'

export type Db = Level<string, Buffer>
export type Batch = ChainedBatch<Db, string, Buffer>
