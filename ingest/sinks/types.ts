/**
 * The sink contract (docs/design.md section 7). A sink stores validated items durably and owns
 * dedup: the leveldb sink keeps its own per-partition floors and runs, a PostgreSQL sink
 * gets the same answers from the table's primary key (gateway, epoch, p, s) with
 * `INSERT ... ON CONFLICT DO NOTHING RETURNING p, s` plus a floors table, inside one
 * transaction per `storeBatch`. Every implementation runs test/integration/sink-contract.ts.
 */
import type { BatchItem, Boot, EvictedRange, Floor, Values } from '../../protocol/index.ts'
import type { Item } from '../item.ts'

/** The fleet of a request without one (read-auth.ts: a `--token` gateway's fleet). */
export const DEFAULT_FLEET = 'default'

export type StoreRequest = {
  gateway: string
  /**
   * The gateway's fleet (read-auth.ts); undefined = DEFAULT_FLEET. Readings are scoped by
   * fleet: the natural key is (fleet, device, boot, seq), so a gateway of one fleet cannot
   * pre-empt another fleet's readings by sending their keys first, while two gateways of
   * one fleet still store a failed-over device's reading once.
   */
  fleet?: string
  epoch: string
  /** `[p, s]`: lowest seq the gateway still holds in p; raises the recorded floor. */
  floors: readonly Floor[]
  /** `[p, from, to]` ranges the gateway evicted; recorded idempotently, counted as loss. */
  evicted: readonly EvictedRange[]
  /** Validated items, in request order. */
  items: readonly BatchItem[]
  /** Items of this request the ingest answered `rejected` (invalid, or chaos): counted, not stored. */
  rejected: number
}

/**
 * `rejected`: the sink cannot hold this item at all (postgres: text with U+0000); counted as rejected.
 * `conflict`: the item's natural key (fleet, device, boot, seq) is held by a stored reading
 * whose content (CONTENT below) differs: the item is not a copy of it, so it is not a
 * duplicate; it is kept in the conflicts record (queryConflicts), durably with the batch,
 * and the stored reading stays as it is.
 */
export type ItemOutcome = 'stored' | 'duplicate' | 'rejected' | 'conflict'

/**
 * What makes two readings with one natural key the same reading: the device's timestamp
 * `ts` and its values map (names and values; order of names does not matter). Not the
 * gateway receive time `rx` (two gateways receive one publish at different times), nor the
 * transport key (gateway, epoch, p, s), which differs by design between two gateways.
 */
export type Content = { ts: number | null, values: Values }

/** True when two readings of one natural key carry the same content (`Content`). */
export function sameContent (a: Content, b: Content): boolean {
  if (a.ts !== b.ts) return false
  const ka = Object.keys(a.values)
  if (ka.length !== Object.keys(b.values).length) return false
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b.values, k)) return false
    const x = a.values[k]
    const y = b.values[k]
    // numbers by value (as JSON and PostgreSQL's jsonb compare them: 0 and -0 are one)
    if (x !== y) return false
  }
  return true
}

export type StoredReading = {
  gateway: string
  epoch: string
  p: number
  s: number
  seq: number | null
  boot: Boot | null
  ts: number | null
  rx: number
  values: Values
}

export type DeviceQuery = {
  device: string
  /** undefined: every boot; null: readings without a boot. */
  boot?: Boot | null
  /** Only with `boot`: readings of that boot with seq >= fromSeq (seq-less ones follow). */
  fromSeq?: number
  limit: number
  /** Opaque, from a previous page's `next`. */
  cursor?: string
  /**
   * Only readings written by these gateways (a fleet, or `?gateway=`); undefined = all. A
   * sink may return a short or empty page with a non-null `next` when it stops scanning
   * past other gateways' readings (bounded work per page).
   */
  gateways?: readonly string[]
  /** Stop adding readings once their stored size reaches about this many bytes (at least one is returned). */
  maxBytes?: number
}

export type DevicePage = { readings: StoredReading[], next: string | null }

/** One copy of a reading, as a gateway sent it: its transport key and its content. */
export type ReadingCopy = { gateway: string, epoch: string, p: number, s: number, ts: number | null, rx: number, values: Values }

/**
 * A natural-key conflict: `conflicting` arrived with the natural key (fleet, device, boot,
 * seq) of `stored`, the reading the sink holds, and other content. `stored` is null only
 * when the stored reading could not be found any more (leveldb: a reading indexed before
 * the index named its reading, whose copies from several fleets differ from this one).
 */
export type ConflictRecord = {
  fleet: string
  device: string
  boot: Boot | null
  seq: number
  stored: ReadingCopy | null
  conflicting: ReadingCopy
  /** when the ingest recorded it, ms since 1970 */
  recordedAt: number
}

export type ConflictQuery = {
  /** undefined: every fleet */
  fleet?: string
  /** undefined: every device */
  device?: string
  limit: number
  /** Opaque, from a previous page's `next`. */
  cursor?: string
}

/** Conflicts ordered by (fleet, device, boot, seq, gateway, epoch, p, s). */
export type ConflictPage = { conflicts: ConflictRecord[], next: string | null }

/** conflicts: items kept as natural-key conflicts (ItemOutcome `conflict`), not as readings. */
export type Counts = { stored: number, duplicates: number, rejected: number, evicted: number, conflicts: number }

/** The kinds of Counts, in the order /v1/stats, the metrics and the page list them. */
export const COUNT_KINDS = ['stored', 'duplicates', 'rejected', 'evicted', 'conflicts'] as const satisfies readonly (keyof Counts)[]
export type Stats = Counts & { gateways: Record<string, Counts> }

export interface Sink {
  readonly kind: string
  /**
   * Stores a request's items atomically and durably (one transaction, fsync) and returns one
   * outcome per item, in item order. It resolves only when the outcomes are durable,
   * including `duplicate` answers (the original may still be in flight in a concurrent
   * request). Throws a retryable StoreError when nothing was stored.
   */
  storeBatch (req: StoreRequest): Promise<ItemOutcome[]>
  /** Readings of one device ordered by (boot, seq); see docs/ingest.md for the boot order. */
  queryDevice (q: DeviceQuery): Promise<DevicePage>
  /** The natural-key conflicts recorded (ItemOutcome `conflict`). */
  queryConflicts (q: ConflictQuery): Promise<ConflictPage>
  /** Counts of items since the store was created. */
  stats (): Promise<Stats>
  /** Idempotent; waits for writes in progress. */
  close (): Promise<void>
  /** Size of the sink's own dedup state, if it keeps one (for metrics and tests). */
  dedupState?(): DedupState
  /** False while the sink cannot store (e.g. its database is unreachable): /readyz answers 503. */
  ready?(): boolean | Promise<boolean>
}

/**
 * seqs: tracked seqs at or above the floors; runs: how many [from, to] runs hold them;
 * epochs: (gateway, epoch) pairs whose state is in memory, epochsEvicted: dropped from memory so far.
 */
export type DedupState = { partitions: number, seqs: number, runs: number, epochs?: number, epochsEvicted?: number }

export function zeroCounts (): Counts {
  return { stored: 0, duplicates: 0, rejected: 0, evicted: 0, conflicts: 0 }
}

/** A store request whose items the ingest has already decoded (the PostgreSQL write paths read them so). */
export type PgRequest = Omit<StoreRequest, 'items'> & { items: readonly Item[] }
