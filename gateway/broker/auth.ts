/**
 * `--auth file`: a JSON file of principals with scrypt-hashed passwords.
 *
 *   { "devices": { "sensor-1": "scrypt$16384$8$1$<salt b64>$<hash b64>" },
 *     "apps":    { "dashboard": "scrypt$..." } }
 *
 * A device connects with client id = username = its id; an app with its own username and
 * any client id that is not a device's id. Create and edit the file with
 * `gateway passwd FILE add-device ID | add-app NAME | remove NAME | list` (gateway/cli/passwd.ts);
 * `gateway --hash-password` prints one hash (reads stdin).
 *
 * Timing says nothing about which names exist: an unknown name, and a device name used with
 * another client id, are checked against a dummy hash with the file's own scrypt cost, so
 * every refusal of a CONNECT with credentials costs one scrypt (without
 * the dummy hash, a known name failed in ~42 ms, an unknown one in 2-6 ms).
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import { ConfigError, isValidDeviceId } from '../../protocol/index.ts'
import type { Principal } from './acl.ts'

/** scrypt cost of new hashes (N=2^14, r=8: ~16 MiB and ~40 ms on a Pi 4 class core). */
export const SCRYPT_DEFAULTS = { N: 16384, r: 8, p: 1 } as const

const scrypt = (pw: Buffer | string, salt: Buffer, len: number, opts: ScryptOptions): Promise<Buffer> =>
  new Promise((resolve, reject) => scryptCb(pw, salt, len, opts, (err, key) => err ? reject(err) : resolve(key)))

export async function hashPassword (password: string, N: number = SCRYPT_DEFAULTS.N, r: number = SCRYPT_DEFAULTS.r, p: number = SCRYPT_DEFAULTS.p): Promise<string> {
  const salt = randomBytes(16)
  const key = await scrypt(password, salt, 32, { N, r, p, maxmem: 256 * N * r })
  return `scrypt$${N}$${r}$${p}$${salt.toString('base64')}$${key.toString('base64')}`
}

export async function verifyPassword (hash: string, password: Buffer | string): Promise<boolean> {
  const parts = hash.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number]
  const salt = Buffer.from(parts[4]!, 'base64')
  const want = Buffer.from(parts[5]!, 'base64')
  const got = await scrypt(password, salt, want.length, { N, r, p, maxmem: 256 * N * r })
  return got.length === want.length && timingSafeEqual(got, want)
}

/** A hash no password matches, with the given cost: checking it takes as long as a real one. */
export function dummyHash (N: number, r: number, p: number): string {
  return `scrypt$${N}$${r}$${p}$${randomBytes(16).toString('base64')}$${randomBytes(32).toString('base64')}`
}

/** The cost most hashes of the file use (the dummy hash takes it, so it times like them). */
function commonCost (hashes: Iterable<string>): [number, number, number] {
  const counts = new Map<string, number>()
  for (const h of hashes) { const k = h.split('$').slice(1, 4).join('$'); counts.set(k, (counts.get(k) ?? 0) + 1) }
  let best = `${SCRYPT_DEFAULTS.N}$${SCRYPT_DEFAULTS.r}$${SCRYPT_DEFAULTS.p}`
  let n = 0
  for (const [k, c] of counts) if (c > n) { best = k; n = c }
  return best.split('$').map(Number) as [number, number, number]
}

export class AuthFile {
  private readonly dummy: string

  private constructor (private readonly devices: Map<string, string>, private readonly apps: Map<string, string>) {
    this.dummy = dummyHash(...commonCost([...devices.values(), ...apps.values()]))
  }

  hasDevice (id: string): boolean { return this.devices.has(id) }
  get names (): { devices: string[], apps: string[] } { return { devices: [...this.devices.keys()], apps: [...this.apps.keys()] } }

  static parse (text: string, path: string): AuthFile {
    let raw: unknown
    try { raw = JSON.parse(text) } catch (err) { throw new ConfigError('authFile', `${path} is not valid JSON: ${(err as Error).message}`) }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('authFile', `${path} must hold an object { devices, apps }`)
    const obj = raw as Record<string, unknown>
    for (const k of Object.keys(obj)) if (k !== 'devices' && k !== 'apps') throw new ConfigError('authFile', `${path}: unknown key ${k} (allowed: devices, apps)`)
    const read = (k: 'devices' | 'apps'): Map<string, string> => {
      const m = new Map<string, string>()
      const v = obj[k] ?? {}
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError('authFile', `${path}: ${k} must be an object of name -> scrypt hash`)
      for (const [name, h] of Object.entries(v)) {
        if (typeof h !== 'string' || !h.startsWith('scrypt$') || h.split('$').length !== 6) throw new ConfigError('authFile', `${path}: ${k}.${name} must be a scrypt$N$r$p$salt$hash string`)
        if (k === 'devices' && !isValidDeviceId(name)) throw new ConfigError('authFile', `${path}: device id ${JSON.stringify(name)} must match ^[A-Za-z0-9._-]{1,64}$`)
        m.set(name, h)
      }
      return m
    }
    return new AuthFile(read('devices'), read('apps'))
  }

  /**
   * The principal for these credentials, or null. Exactly one scrypt whenever a user name and
   * a password are given, whatever the outcome (see the header).
   */
  async authenticate (clientId: string, username: string | undefined, password: Buffer | undefined): Promise<Exclude<Principal, { role: 'anonymous' }> | null> {
    if (!username || !password) return null
    const dev = this.devices.get(username)
    const app = dev === undefined ? this.apps.get(username) : undefined
    const ok = await verifyPassword(dev ?? app ?? this.dummy, password)
    if (!ok) return null
    if (dev !== undefined) return username === clientId ? { role: 'device', name: username } : null // a device's client id is its id
    return app !== undefined ? { role: 'app', name: username } : null
  }
}
