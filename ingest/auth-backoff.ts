/**
 * Per-address back-off of failed authentication at the ingest (issue #19 item 7), the same
 * mechanism as the gateway's MQTT login back-off (gateway/broker/login-guard.ts): after
 * `freeFailures` wrong tokens from one address, each further wrong token bans the address
 * for base * 2^k ms (capped at maxMs). While banned, every request from it that needs a
 * token (batches and the read side) is answered 429 with Retry-After before any token is
 * looked at: a guesser learns nothing during the ban, so guessing runs at a few tries a
 * minute instead of thousands a second. An address is forgotten FORGET_MS after its last
 * failure; a success does not clear the count (one valid token must not reset a guesser).
 *
 * Only a wrong token counts: a request without `authorization` (a page opened before its
 * read token is typed, a probe) is answered 401 and not counted. A request with a verified
 * client certificate is never held back (the certificate, not a token, authenticates it).
 *
 * Trade-off (docs/security.md): the ban is per address, so a wrong-token storm from behind
 * the same NAT as a gateway delays that gateway's batches too, for at most maxMs at a time.
 * The gateway keeps its readings on disk and retries after Retry-After, so this costs
 * latency, not data; give such a gateway a client certificate to exempt it. Checking good
 * tokens during the ban instead would answer the guesser "right" or "429" at full speed,
 * which is no back-off at all.
 *
 * Keys: an IPv4 address (IPv4-mapped IPv6 as IPv4), an IPv6 address by its /64 (one host
 * usually owns a whole /64). Memory: at most `maxAddresses` entries, least recently failed
 * forgotten first (a Map in insertion order; a failure moves its entry to the end), so a
 * flood of fresh addresses only makes the table forget, which is counted.
 */
import { isIP } from 'node:net'
import { ipv6Groups } from '../protocol/loopback.ts'

export const FORGET_MS = 15 * 60_000

export type AuthBackoffConfig = { freeFailures: number, baseMs: number, maxMs: number, maxAddresses: number }

type Entry = { failures: number, lastFailureAt: number, bannedUntil: number }

/** The key an address is counted by: IPv4, or the /64 of an IPv6 address. */
export function addressKey (addr: string | undefined): string {
  if (!addr) return 'unknown'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr)
  if (mapped) return mapped[1]!
  if (isIP(addr) !== 6) return addr
  const g = ipv6Groups(addr.split('%')[0]!)
  return g ? `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64` : addr
}

export class AuthBackoff {
  private readonly table = new Map<string, Entry>()
  /** Entries dropped to stay within maxAddresses. */
  evictions = 0

  constructor (private readonly c: AuthBackoffConfig, private readonly now: () => number = Date.now) {}

  get enabled (): boolean { return this.c.baseMs > 0 && this.c.maxMs > 0 }
  get tracked (): number { return this.table.size }

  private live (key: string): Entry | undefined {
    const e = this.table.get(key)
    if (e && this.now() - e.lastFailureAt > FORGET_MS) { this.table.delete(key); return undefined }
    return e
  }

  /** Remaining ban of this address in ms (0 = its token may be checked). */
  bannedFor (key: string): number {
    if (!this.enabled) return 0
    const e = this.live(key)
    return e ? Math.max(0, e.bannedUntil - this.now()) : 0
  }

  /** Records a wrong token; returns the ban it starts in ms (0 = none). */
  fail (key: string): number {
    if (!this.enabled) return 0
    const now = this.now()
    let e = this.live(key)
    if (e) this.table.delete(key) // re-inserted at the end: most recently failed
    else {
      e = { failures: 0, lastFailureAt: now, bannedUntil: 0 }
      while (this.table.size >= this.c.maxAddresses) { this.table.delete(this.table.keys().next().value as string); this.evictions++ }
    }
    this.table.set(key, e)
    e.failures++
    e.lastFailureAt = now
    const over = e.failures - this.c.freeFailures
    if (over <= 0) return 0
    const ban = Math.min(this.c.maxMs, this.c.baseMs * 2 ** Math.min(over - 1, 40))
    e.bannedUntil = now + ban
    return ban
  }
}
