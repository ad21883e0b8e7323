/**
 * The age of the oldest buffered item per partition, refreshed every second from the head
 * of each partition (one bounded read each), for /status and
 * `gateway_oldest_unacked_age_seconds`.
 */
import { decodeTrusted, type BatchItem } from '../../protocol/index.ts'
import type { Metrics } from '../metrics/index.ts'
import type { Store } from '../store/index.ts'

const REFRESH_MS = 1000

export class OldestAge {
  private readonly oldestRx: Array<number | null>
  private timer: NodeJS.Timeout | null = null

  constructor (private readonly store: Store, private readonly metrics: Metrics) {
    this.oldestRx = Array.from({ length: store.partitions }, () => null)
  }

  start (): void {
    this.timer = setInterval(() => { this.refresh().catch(() => {}) }, REFRESH_MS)
    this.timer.unref()
    void this.refresh().catch(() => {})
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  ageMs (p: number): number | null {
    const rx = this.oldestRx[p]
    return rx === null || rx === undefined ? null : Math.max(0, Date.now() - rx)
  }

  private async refresh (): Promise<void> {
    let oldest: number | null = null
    for (let p = 0; p < this.store.partitions; p++) {
      const raw = this.store.items > 0 && this.store.partitionStats()[p]!.depth > 0 ? await this.store.oldest(p) : null
      // the store wrote these bytes itself; a corrupt one throws here and is dead-lettered by the next read
      const item = raw ? decodeTrusted(raw) as BatchItem : null
      this.oldestRx[p] = item ? item[6] : null
      if (item && (oldest === null || item[6] < oldest)) oldest = item[6]
    }
    this.metrics.oldestAge.set(oldest === null ? 0 : Math.max(0, Date.now() - oldest) / 1000)
  }
}
