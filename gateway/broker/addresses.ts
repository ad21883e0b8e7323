/**
 * Source addresses as keys of per-address limits, and a bounded table of them.
 *
 * One IPv6 host usually owns a whole /64, so an IPv6 address counts by its /64 prefix
 * (otherwise one attacker has 2^64 fresh keys); an IPv4-mapped IPv6 address counts as its
 * IPv4 address. The table keeps at most `max` entries, least recently touched forgotten
 * first, so a flood of distinct addresses costs bounded memory (it can only make the table
 * forget, which is counted).
 */
import { BlockList, isIP } from 'node:net'

function expandV6 (addr: string): string[] | null {
  const a = addr.split('%')[0]!
  const halves = a.split('::')
  if (halves.length > 2) return null
  const head = halves[0] ? halves[0].split(':') : []
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : []
  // an embedded IPv4 tail (::ffff:1.2.3.4 style) takes two groups
  const last = tail.length > 0 ? tail : head
  if (last.length > 0 && last[last.length - 1]!.includes('.')) last.splice(last.length - 1, 1, '0', '0')
  const fill = 8 - head.length - tail.length
  if (halves.length === 1 ? fill !== 0 : fill < 0) return null
  return [...head, ...Array<string>(fill).fill('0'), ...tail].map((g) => (parseInt(g || '0', 16) || 0).toString(16))
}

/** Normalised address: IPv4-mapped IPv6 to IPv4. */
export function plainAddress (addr: string | undefined): string {
  if (!addr) return 'unknown'
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr)
  return m ? m[1]! : addr
}

/** The key per-address limits count by: IPv4 address, or IPv6 /64 prefix. */
export function addressKey (addr: string | undefined): string {
  const a = plainAddress(addr)
  if (isIP(a.split('%')[0]!) !== 6) return a
  const g = expandV6(a)
  return g ? `${g.slice(0, 4).join(':')}::/64` : a
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
