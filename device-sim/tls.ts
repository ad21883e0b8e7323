/**
 * TLS options of the simulated devices (docs/security-tls.md): `--ca` is the CA that
 * signed the gateway's certificate (for an `mqtts://` broker URL); `--cert` and `--key`
 * are each device's client certificate and key, for a gateway with
 * `--tls-require-client-cert` where the certificate's CN is the device id. In `--cert`
 * and `--key`, `{id}` stands for the device id (`certs/{id}.pem`), so every device
 * presents its own certificate. Files are read once and kept.
 */
import { readFileSync } from 'node:fs'
import type { SimConfig } from './config.ts'

const files = new Map<string, Buffer>()

function read (path: string): Buffer {
  let b = files.get(path)
  if (b === undefined) files.set(path, b = readFileSync(path))
  return b
}

export type DeviceTls = { ca?: Buffer, cert?: Buffer, key?: Buffer }

export function deviceTls (c: Pick<SimConfig, 'ca' | 'cert' | 'key'>, deviceId: string): DeviceTls {
  const out: DeviceTls = {}
  if (c.ca !== undefined) out.ca = read(c.ca)
  if (c.cert !== undefined) out.cert = read(c.cert.replaceAll('{id}', deviceId))
  if (c.key !== undefined) out.key = read(c.key.replaceAll('{id}', deviceId))
  return out
}
