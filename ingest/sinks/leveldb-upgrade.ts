/**
 * Upgrades of an older leveldb sink layout (leveldb-keys.ts FORMAT_VERSION), run on open
 * before the sink serves anything.
 *
 * Layouts 1 to 3 -> 4: readings keep their keys and values. Layouts 2 and 3 kept a second
 * key per reading with a seq, the natural-key index `n!...`; layout 4 finds a reading's
 * natural key in its own key range (device, boot, seq) and its fleet in its value, so the
 * n! keys are deleted (layout 1 has none). A reading written before layout 4 has no fleet
 * in its value: it counts for the fleet its gateway has in the ingest's tokens config
 * (leveldb.ts `fleetOf`), or `default` for a gateway the config no longer lists.
 *
 * Crash behaviour: the deletes are written in synced batches and the format marker is
 * bumped in the last one, so an upgrade cut short runs again on the next open; deleting a
 * key already deleted does nothing.
 */
import type { Level } from 'level'
import { FORMAT_VERSION, META_FORMAT_KEY } from './leveldb-keys.ts'

const BATCH_KEYS = 10_000

/** Brings a layout 1, 2 or 3 store to layout 4; returns how many index keys it deleted. */
export async function upgradeLayout (db: Level<string, string>): Promise<number> {
  let batch = db.batch()
  let n = 0
  for await (const key of db.keys({ gte: 'n!', lt: 'n"' })) {
    batch.del(key)
    if (++n % BATCH_KEYS === 0) {
      await batch.write({ sync: true })
      batch = db.batch()
    }
  }
  batch.put(META_FORMAT_KEY, FORMAT_VERSION)
  await batch.write({ sync: true })
  return n
}
