/**
 * The sink contract (docs/design.md section 7). A sink stores validated items durably and owns
 * dedup: the leveldb sink keeps its own per-partition floors and runs, a PostgreSQL sink
 * gets the same answers from the table's primary key (gateway, epoch, p, s) with
 * `INSERT ... ON CONFLICT DO NOTHING RETURNING p, s` plus a floors table, inside one
 * transaction per `storeBatch`. Every implementation runs test/integration/sink-contract.ts.
 */
import type { BatchItem, Boot, EvictedRange, Floor, Values } from '../../protocol/index.ts'

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

/** `rejected`: the sink cannot hold this item at all (postgres: text with U+0000); counted as rejected. */
export type ItemOutcome = 'stored' | 'duplicate' | 'rejected'

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

export type Counts = { stored: number, duplicates: number, rejected: number, evicted: number }
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
  return { stored: 0, duplicates: 0, rejected: 0, evicted: 0 }
}
