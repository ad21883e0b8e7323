/**
 * Source addresses as keys of per-address limits, and a bounded table of them: the MQTT
 * login and connection limits (gateway/broker/login-guard.ts) and the ingest's wrong-token
 * back-off (ingest/auth-backoff.ts) count by the same keys in the same kind of table.
 *
 * One IPv6 host usually owns a whole /64, so an IPv6 address counts by its /64 prefix
 * (otherwise one attacker has 2^64 fresh keys); an IPv4-mapped IPv6 address counts as its
 * IPv4 address. The table keeps at most `max` entries, least recently touched forgotten
 * first, so a flood of distinct addresses costs bounded memory (it can only make the table
 * forget, which is counted).
 */
import { BlockList, isIP } from 'node:net'
import { ipv6Groups } from '../protocol/loopback.ts'

/** Normalised address: IPv4-mapped IPv6 to IPv4. */
export function plainAddress (addr: string | undefined): string {
  if (!addr) return 'unknown'
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr)
  return m ? m[1]! : addr
}

/** The key per-address limits count by: IPv4 address, or IPv6 /64 prefix. */
export function addressKey (addr: string | undefined): string {
  const a = plainAddress(addr)
  const bare = a.split('%')[0]!
  if (isIP(bare) !== 6) return a
  const g = ipv6Groups(bare)
  return g ? `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64` : a
}

/** Membership in a list of CIDRs (validated by checkLocalNetworks at startup). */
export class NetworkList {
  private readonly list = new BlockList()
  readonly empty: boolean

  constructor (cidrs: readonly string[]) {
    this.empty = cidrs.length === 0
    for (const c of cidrs) {
      const [addr, bits] = c.split('/') as [string, string | undefined]
      const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4'
      this.list.addSubnet(addr, bits === undefined ? (type === 'ipv6' ? 128 : 32) : Number(bits), type)
    }
  }

  has (addr: string | undefined): boolean {
    if (this.empty) return false
    const a = plainAddress(addr).split('%')[0]!
    const fam = isIP(a)
    return fam !== 0 && this.list.check(a, fam === 6 ? 'ipv6' : 'ipv4')
  }
}

/** A Map bounded to `max` entries, least recently touched evicted first. */
export class AddressTable<V> {
  private readonly map = new Map<string, V>()
  evictions = 0

  constructor (private readonly max: number, private readonly onEvict?: (key: string, v: V) => void) {}

  get size (): number { return this.map.size }

  /** The entry for `key` (made with `create` if absent), now the most recently touched. */
  touch (key: string, create: () => V): V {
    let v = this.map.get(key)
    if (v !== undefined) this.map.delete(key)
    else {
      v = create()
      while (this.map.size >= this.max) {
        const [oldKey, oldV] = this.map.entries().next().value as [string, V]
        this.map.delete(oldKey)
        this.evictions++
        this.onEvict?.(oldKey, oldV)
      }
    }
    this.map.set(key, v)
    return v
  }

  peek (key: string): V | undefined { return this.map.get(key) }
  delete (key: string): void { this.map.delete(key) }
  values (): IterableIterator<V> { return this.map.values() }
}

export type BackoffConfig = { freeFailures: number, baseMs: number, maxMs: number, forgetMs: number, maxAddresses: number }

type FailEntry = { failures: number, lastFailureAt: number, bannedUntil: number }

/**
 * Failures per source address: after `freeFailures`, each further failure bans the address
 * for base * 2^k ms (capped at maxMs). An address is forgotten `forgetMs` after its last
 * failure. A success does not clear the count (a guesser with one valid credential could
 * otherwise reset it between guesses). At most `maxAddresses` entries (AddressTable).
 */
export class FailureBackoff {
  private readonly table: AddressTable<FailEntry>

  constructor (private readonly c: BackoffConfig, private readonly now: () => number = Date.now) {
    this.table = new AddressTable(c.maxAddresses)
  }

  /** Off when either bound is 0: nothing is ever banned. */
  get enabled (): boolean { return this.c.baseMs > 0 && this.c.maxMs > 0 }
  get tracked (): number { return this.table.size }
  get evictions (): number { return this.table.evictions }

  private live (key: string): FailEntry | undefined {
    const e = this.table.peek(key)
    if (e && this.now() - e.lastFailureAt > this.c.forgetMs) { this.table.delete(key); return undefined }
    return e
  }

  /** Remaining ban in ms for this address (0 = may try). */
  bannedFor (key: string): number {
    const e = this.live(key)
    return e ? Math.max(0, e.bannedUntil - this.now()) : 0
  }

  /** Records a failure (a wrong password or token); returns the ban it starts (0 = none yet). */
  fail (key: string): number {
    if (!this.enabled) return 0 // off: nothing to count for
    const now = this.now()
    this.live(key) // drops an entry past forgetMs: its count starts again
    const e = this.table.touch(key, () => ({ failures: 0, lastFailureAt: now, bannedUntil: 0 }))
    e.failures++
    e.lastFailureAt = now
    const over = e.failures - this.c.freeFailures
    if (over <= 0) return 0
    const ban = Math.min(this.c.maxMs, this.c.baseMs * 2 ** Math.min(over - 1, 40))
    e.bannedUntil = now + ban
    return ban
  }

  banned (): number {
    const now = this.now()
    let n = 0
    for (const e of this.table.values()) if (e.bannedUntil > now) n++
    return n
  }
}
