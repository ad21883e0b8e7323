/**
 * The leveldb sink's natural-key window. A reading with a device seq is also identified by
 * (fleet, device, boot, seq): its n! key (leveldb-keys.ts `naturalKey`) is written in the
 * same batch as the reading, and a copy through another gateway or epoch of the same fleet
 * is answered duplicate. A request reads the n! keys from disk before its apply step; that
 * read may miss a copy not yet durable, or one whose write completed after the read began.
 * This window holds those: natural keys applied recently with the copy that holds them (so
 * that a later copy's content can be compared, types.ts `sameContent`), and 0 while their
 * write is not durable, else the number of the completion that made them durable. An entry is kept until
 * every read in progress began after its completion (each read registers its starting
 * completion number with `beginRead`). Guarded by test/integration/sink-contract.ts (the
 * natural-key cases) and test/integration/ingest-sink-leveldb.test.ts.
 */
import type { ReadingCopy } from './types.ts'

export type NaturalRead = { from: number }

type Entry = { n: number, copy: ReadingCopy }

export class NaturalKeyWindow {
  private readonly natural = new Map<string, Entry>()
  private completions = 0
  private readonly readers = new Set<NaturalRead>()

  /** A disk read of n! keys begins: entries completed from now on are kept until `endRead`. */
  beginRead (r: NaturalRead): void {
    r.from = this.completions
    this.readers.add(r)
  }

  endRead (r: NaturalRead): void {
    this.readers.delete(r)
    this.prune()
  }

  has (key: string): boolean { return this.natural.has(key) }

  /** The copy that holds `key`, if the window has it. */
  get (key: string): ReadingCopy | undefined { return this.natural.get(key)?.copy }

  /** A key applied by a write not yet durable, held by `copy`. */
  applied (key: string, copy: ReadingCopy): void { this.natural.set(key, { n: 0, copy }) }

  /** The write holding `keys` is durable. */
  completed (keys: readonly string[]): void {
    const n = ++this.completions
    // re-inserted so that completion numbers grow in Map order (prune stops at the first newer one)
    for (const k of keys) {
      const e = this.natural.get(k)
      if (e?.n === 0) { this.natural.delete(k); e.n = n; this.natural.set(k, e) }
    }
    this.prune()
  }

  /** After a failed write: keys whose write never became durable are forgotten. */
  dropVolatile (): void {
    for (const [k, e] of this.natural) if (e.n === 0) this.natural.delete(k)
  }

  /** Forgets natural keys that every read in progress would find on disk. */
  private prune (): void {
    let oldest = this.completions
    for (const r of this.readers) oldest = Math.min(oldest, r.from)
    for (const [k, e] of this.natural) {
      if (e.n === 0) continue
      if (e.n > oldest) break // completion numbers grow in insertion order
      this.natural.delete(k)
    }
  }
}
