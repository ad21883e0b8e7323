/**
 * `--auth file`: a JSON file of principals with scrypt-hashed passwords.
 *
 *   { "devices": { "sensor-1": "scrypt$16384$8$1$<salt b64>$<hash b64>" },
 *     "apps":    { "dashboard": "scrypt$..." } }
 *
 * A device connects with client id = username = its id; an app with its own username and
 * any client id. Hash a password with `npm run gateway -- --hash-password` (reads stdin).
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import { ConfigError, isValidDeviceId } from '../../protocol/index.ts'

export type Role = 'device' | 'app'
export type Principal = { role: Role, name: string }

const scrypt = (pw: Buffer | string, salt: Buffer, len: number, opts: ScryptOptions): Promise<Buffer> =>
  new Promise((resolve, reject) => scryptCb(pw, salt, len, opts, (err, key) => err ? reject(err) : resolve(key)))

export async function hashPassword (password: string, N = 16384, r = 8, p = 1): Promise<string> {
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

export class AuthFile {
  private constructor (private readonly devices: Map<string, string>, private readonly apps: Map<string, string>) {}

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

  /** The principal for these credentials, or null. */
  async authenticate (clientId: string, username: string | undefined, password: Buffer | undefined): Promise<Principal | null> {
    if (!username || !password) return null
    const dev = this.devices.get(username)
    if (dev !== undefined) {
      if (username !== clientId) return null // a device's client id is its id
      return await verifyPassword(dev, password) ? { role: 'device', name: username } : null
    }
    const app = this.apps.get(username)
    if (app !== undefined) return await verifyPassword(app, password) ? { role: 'app', name: username } : null
    return null
  }
}
