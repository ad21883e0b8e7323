/**
 * Login hardening against password guessing, three mechanisms, each bounded in memory:
 *
 * - `Gate`: at most `max` password checks (scrypt) at once, at most `maxQueued` waiting.
 *   scrypt runs on the libuv thread pool, which LevelDB shares (4 threads by default): 60
 *   concurrent wrong-password CONNECTs raised a real device's worst PUBACK from 7.5 ms to
 *   968 ms. With 2 slots, 2 threads stay free for the store whatever the storm.
 * - Failed logins per source address: `FailureBackoff` (common/addresses.ts, shared with the
 *   ingest's wrong-token back-off); while an address is banned, a CONNECT is refused with
 *   CONNACK 5 before any scrypt runs.
 * - `ConnectRate`: a token bucket per source address (`rate`/s, `burst`), checked on the raw
 *   socket before Aedes parses anything.
 */
import { EdgeError } from '../../protocol/index.ts'
import { AddressTable } from '../../common/addresses.ts'

/** The password-check queue is full (`queued` waiting); the CONNECT is refused with CONNACK 3. */
export class GateFullError extends EdgeError {
  static override readonly code = 'EDGE_ERR_LOGIN_BUSY'
  override name = 'GateFullError'
  constructor (readonly queued: number, opts: { cause?: unknown } = {}) {
    super(`${queued} password checks already waiting`, { ...opts, retryable: true })
  }
}

export class Gate {
  private active = 0
  private readonly waiting: Array<() => void> = []
  /** Highest number of checks seen running at once (tests and /metrics read it). */
  peak = 0

  constructor (private readonly max: number, private readonly maxQueued: number) {}

  get running (): number { return this.active }
  get queued (): number { return this.waiting.length }

  /** Runs `fn` when a slot is free; throws GateFullError at once when the queue is full. */
  async run<T> (fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.max) {
      if (this.waiting.length >= this.maxQueued) throw new GateFullError(this.waiting.length)
      await new Promise<void>((resolve) => this.waiting.push(resolve))
    } else this.active++
    this.peak = Math.max(this.peak, this.active)
    try {
      return await fn()
    } finally {
      const next = this.waiting.shift()
      if (next) next() // the slot passes on: active stays the same
      else this.active--
    }
  }
}

type Bucket = { tokens: number, at: number }

export class ConnectRate {
  private readonly table: AddressTable<Bucket>

  constructor (private readonly rate: number, private readonly burst: number, maxAddresses: number, private readonly now: () => number = Date.now) {
    this.table = new AddressTable(maxAddresses)
  }

  get tracked (): number { return this.table.size }
  get enabled (): boolean { return this.rate > 0 }

  /** Takes one token: true = admit the connection. */
  take (key: string): boolean {
    if (this.rate <= 0) return true
    const now = this.now()
    const b = this.table.touch(key, () => ({ tokens: this.burst, at: now }))
    b.tokens = Math.min(this.burst, b.tokens + (now - b.at) * this.rate / 1000)
    b.at = now
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }
}
