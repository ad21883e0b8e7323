/**
 * The one loopback rule. Every gate that relaxes a safe default because
 * traffic "never leaves the box" asks `isLoopback`: the gateway's `--admin-host` (no admin
 * token needed), its MQTT `--host` (`--auth none` allowed), an `http://` upstream (token
 * sent in clear), the ingest's `--host` (read side open without a read token), and the
 * admin server's Host header check (DNS rebinding). Pure: no DNS, no I/O.
 *
 * Loopback is:
 * - an IPv4 literal in 127.0.0.0/8 (dotted quad, as `net.isIP` accepts it);
 * - `::1` in any spelling: `::1`, `0:0:0:0:0:0:0:1`, zero-padded groups, upper case,
 *   bracketed (`[::1]`);
 * - an IPv4-mapped IPv6 address of 127.0.0.0/8: `::ffff:127.0.0.1`, `::ffff:7f00:1`;
 * - the name `localhost` (any case), exactly.
 *
 * Not loopback: `*.localhost`, `ip6-localhost` and every other name, `0.0.0.0` and `::`
 * (every interface), IPv4-compatible `::127.0.0.1` (deprecated, not routed to lo), an
 * address with a zone id (`::1%lo`), short IPv4 forms (`127.1`), and anything with a port.
 * A false "not loopback" only asks for a token; a false "loopback" opens a door, so
 * anything unusual is refused.
 *
 * Why `*.localhost` is not loopback, though RFC 6761 reserves it: `localhost` is pinned by
 * /etc/hosts on every system we run on, but `foo.localhost` is not; glibc without
 * nss-myhostname sends it to the network's DNS server, which may answer anything (a rogue
 * resolver, or DNS rebinding). For a bind address the name would have to resolve to
 * loopback at listen time, which nothing here checks; for a Host header the name is
 * attacker-chosen and only a browser that hard-codes `.localhost` keeps it local. One rule
 * for both: only names that cannot be re-pointed count. (`ip6-localhost` and
 * `ip6-loopback` are Debian /etc/hosts aliases, not a standard; spell `::1`.)
 */
import { isIP } from 'node:net'

/** The eight 16-bit groups of a valid IPv6 literal (no zone id), or null. */
export function ipv6Groups (addr: string): number[] | null {
  if (isIP(addr) !== 6 || addr.includes('%')) return null
  let s = addr
  let tail: number[] = []
  const v4 = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(s)
  if (v4) {
    const o = v4[2]!.split('.').map(Number)
    tail = [(o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!]
    s = v4[1]!.endsWith('::') ? v4[1]! : v4[1]!.slice(0, -1)
  }
  const halves = s.split('::')
  const parse = (part: string): number[] => part === '' ? [] : part.split(':').map((g) => parseInt(g, 16))
  const head = parse(halves[0]!)
  const rest = halves.length === 2 ? [...parse(halves[1]!), ...tail] : []
  const fill = 8 - head.length - rest.length - (halves.length === 2 ? 0 : tail.length)
  const groups = halves.length === 2 ? [...head, ...Array<number>(fill).fill(0), ...rest] : [...head, ...tail]
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null
}

/** True for an address or host name that only this machine can reach (rule above). */
export function isLoopback (host: string): boolean {
  let h = host.trim().toLowerCase()
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1)
  if (h === 'localhost') return true
  const fam = isIP(h)
  if (fam === 4) return h.startsWith('127.')
  if (fam !== 6) return false
  const g = ipv6Groups(h)
  if (g === null) return false
  const zeros = (n: number): boolean => g.slice(0, n).every((x) => x === 0)
  if (zeros(7) && g[7] === 1) return true // ::1
  return zeros(5) && g[5] === 0xffff && g[6]! >> 8 === 127 // ::ffff:127.x.y.z
}

/**
 * Splits a Host header (`name`, `name:port`, `[v6]`, `[v6]:port`) into host and port
 * (null when absent); null when it is not of that shape.
 */
export function splitHostHeader (value: string): { host: string, port: number | null } | null {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]\s/@]+)(?::(\d{1,5}))?$/.exec(value)
  if (!m) return null
  const port = m[2] === undefined ? null : Number(m[2])
  if (port !== null && port > 65535) return null
  return { host: m[1]!, port }
}
