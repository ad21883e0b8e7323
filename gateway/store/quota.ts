/**
 * The buffer quota (`maxBufferItems`/`maxBufferBytes`): durable totals plus what the
 * current and the writing cycle reserved, so `hasRoom` answers for readings not yet on
 * disk. Under `fullPolicy=drop-oldest` there is always room: the writer evicts instead
 * (evict.ts).
 */
import type { StoreConfig } from './config.ts'

export class Quota {
  items = 0
  bytes = 0
  private reservedItems = 0
  private reservedBytes = 0

  constructor (private readonly config: Pick<StoreConfig, 'maxBufferItems' | 'maxBufferBytes' | 'fullPolicy'>) {}

  /** True when one more item costing `cost` (its `itemCost`) fits (always true under drop-oldest). */
  hasRoom (cost: number): boolean {
    if (this.config.fullPolicy === 'drop-oldest') return true
    return this.items + this.reservedItems < this.config.maxBufferItems &&
      this.bytes + this.reservedBytes + cost <= this.config.maxBufferBytes
  }

  /** True when the durable totals exceed the quota (drop-oldest evicts then). */
  get over (): boolean {
    return this.items > this.config.maxBufferItems || this.bytes > this.config.maxBufferBytes
  }

  /** An item costing `size` (its `itemCost`) was appended to a cycle. */
  reserve (size: number): void {
    this.reservedItems++
    this.reservedBytes += size
  }

  /** A cycle's appends were written or failed: their reservation ends. */
  unreserve (items: number, bytes: number): void {
    this.reservedItems -= items
    this.reservedBytes -= bytes
  }

  /** Applies a durable change of items/bytes. */
  apply (items: number, bytes: number): void {
    this.items += items
    this.bytes += bytes
  }
}
