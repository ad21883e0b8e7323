/**
 * Bounds the leveldb sink's in-memory dedup state by epochs. The sink loads the
 * dedup state of a (gateway, epoch, partition) on first use and used to keep it forever, so
 * a valid token sending batches under ever new epochs grew the ingest without limit. Each
 * gateway normally has one live epoch (a new one only when its store is wiped), so this
 * keeps the dedup maps of at most `maxPerGateway` epochs per gateway in memory, least
 * recently used first out. Eviction drops only the in-memory copy: the durable state stays
 * in LevelDB and is loaded again if the epoch comes back, so answers do not change.
 *
 * An epoch is evicted only when no request is using it (between its load and the moment
 * its write is durable), so an eviction never drops state that disk does not hold yet;
 * while every epoch of a gateway is busy the cap is exceeded by the requests in flight.
 */
export class EpochLru {
  /** gateway -> epoch -> requests in progress; Map order is least recently used first. */
  private readonly gateways = new Map<string, Map<string, number>>()
  private evictions = 0

  constructor (private readonly maxPerGateway: number, private readonly evict: (gateway: string, epoch: string) => void) {}

  /** Marks (gateway, epoch) in use and most recent; returns the release to call when done. */
  acquire (gateway: string, epoch: string): () => void {
    let epochs = this.gateways.get(gateway)
    if (!epochs) this.gateways.set(gateway, epochs = new Map())
    const n = (epochs.get(epoch) ?? 0) + 1
    epochs.delete(epoch)
    epochs.set(epoch, n)
    this.trim(gateway, epochs)
    let released = false
    return () => {
      if (released) return
      released = true
      const m = this.gateways.get(gateway)
      const k = m?.get(epoch)
      if (m && k !== undefined) m.set(epoch, k - 1) // keeps its LRU position
    }
  }

  private trim (gateway: string, epochs: Map<string, number>): void {
    if (epochs.size <= this.maxPerGateway) return
    for (const [epoch, active] of epochs) {
      if (epochs.size <= this.maxPerGateway) break
      if (active > 0) continue
      epochs.delete(epoch)
      this.evictions++
      this.evict(gateway, epoch)
    }
  }

  /** Epochs held in memory, over all gateways. */
  get size (): number {
    let n = 0
    for (const e of this.gateways.values()) n += e.size
    return n
  }

  get evicted (): number { return this.evictions }
}
