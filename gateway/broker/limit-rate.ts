/**
 * The per-client PUBLISH rate (`publishRateLimit` a second on average, `publishRateBurst`
 * at once): a token bucket a client, refilled continuously from the monotonic clock. Aedes
 * has no rate limit of its own. Keyed by the Aedes client object in a WeakMap, so
 * a bucket goes with its client. Guarded by test/faults/hostile-clients.test.ts.
 */
type Bucket = { tokens: number, at: number }

export class PublishRate {
  private readonly buckets = new WeakMap<object, Bucket>()

  constructor (private readonly rate: number, private readonly burst: number) {}

  /** Takes a token; returns 0, or how long (ms) to wait until the bucket is back at zero. */
  take (client: object): number {
    const now = performance.now()
    let b = this.buckets.get(client)
    if (!b) { b = { tokens: this.burst, at: now }; this.buckets.set(client, b) }
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.rate / 1000)
    b.at = now
    b.tokens -= 1
    return b.tokens >= 0 ? 0 : -b.tokens * 1000 / this.rate
  }
}
