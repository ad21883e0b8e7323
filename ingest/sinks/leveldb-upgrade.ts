/**
 * Upgrades of an older leveldb sink layout (leveldb-keys.ts FORMAT_VERSION), run on open
 * before the sink serves anything.
 *
 * - 1 -> 3: layout 1 has no natural-key index: it is built from the stored readings (r!
 *   keys with a seq), under fleet `default`.
 * - 2 -> 3: layout 2's n! keys have no fleet (`n!{device}!{bootKey}!{seq}`): each is
 *   rewritten as `n!{hex('default')}!{device}!{bootKey}!{seq}`. Readings do not record their
 *   fleet, and every gateway was in fleet `default` before fleets existed; readings that a
 *   gateway of another fleet stored under layout 2 are then indexed as `default`, so a copy
 *   of one of them from its own fleet is stored once more (a duplicate, never a loss).
 *
 * Crash behaviour: the new keys are written (and the old ones deleted) in synced batches
 * and the format marker is bumped in the last one, so an upgrade cut short runs again on
 * the next open. It is idempotent: layout-3 keys have one more `!` field than layout-2
 * ones and are left alone, and a key already rewritten is simply written again.
 */
import type { Level } from 'level'
import { FORMAT_VERSION, META_FORMAT_KEY, naturalKeyOfLayout2, naturalKeyOfReadingKey } from './leveldb-keys.ts'
import { DEFAULT_FLEET } from './types.ts'

const BATCH_KEYS = 10_000

export async function upgradeLayout (db: Level<string, string>, from: '1' | '2'): Promise<void> {
  let batch = db.batch()
  let n = 0
  const flush = async (): Promise<void> => {
    if (++n % BATCH_KEYS !== 0) return
    await batch.write({ sync: true })
    batch = db.batch()
  }
  if (from === '1') {
    for await (const key of db.keys({ gte: 'r!', lt: 'r"' })) {
      const nk = naturalKeyOfReadingKey(key, DEFAULT_FLEET)
      if (nk === null) continue
      batch.put(nk, '')
      await flush()
    }
  } else {
    // The iterator reads a snapshot, so the keys written meanwhile are not visited.
    for await (const key of db.keys({ gte: 'n!', lt: 'n"' })) {
      const nk = naturalKeyOfLayout2(key, DEFAULT_FLEET)
      if (nk === null) continue
      batch.put(nk, '')
      batch.del(key)
      await flush()
    }
  }
  batch.put(META_FORMAT_KEY, FORMAT_VERSION)
  await batch.write({ sync: true })
}
