/**
 * A throwaway PKI made at run time with the openssl CLI (Debian package `openssl`) for the
 * TLS tests (test/helpers/certs.ts re-exports it) and bench/tls.ts: a CA, and leaf
 * certificates signed by it, P-256 keys. Nothing is checked in; every run gets fresh keys.
 * node:crypto can parse certificates but not issue them, hence the CLI.
 *
 * A leaf has CN = its name and subjectAltName IP:127.0.0.1, DNS:localhost (so one leaf can
 * serve as server or client certificate). `expired: true` issues one whose notAfter is a
 * day in the past (`-days -1`).
 */
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export type Pem = { cert: string, key: string, certPath: string, keyPath: string }
export type Ca = Pem & { dir: string, name: string }

let serial = Math.floor(Math.random() * 1e6) + 100

async function openssl (args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd })
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string }
    if (e.code === 'ENOENT') throw new Error('the openssl CLI is missing: the TLS tests and bench need the Debian package openssl (apt-get install openssl)')
    throw new Error(`openssl ${args[0]} failed: ${e.stderr ?? e.message}`)
  }
}

async function load (certPath: string, keyPath: string): Promise<Pem> {
  return { cert: await readFile(certPath, 'utf8'), key: await readFile(keyPath, 'utf8'), certPath, keyPath }
}

/** A self-signed CA valid for a day, files `{name}.pem` / `{name}.key` in dir. */
export async function makeCa (dir: string, name = 'test-ca'): Promise<Ca> {
  const certPath = join(dir, `${name}.pem`)
  const keyPath = join(dir, `${name}.key`)
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-subj', `/CN=${name}`, '-days', '1',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir)
  return { ...await load(certPath, keyPath), dir, name }
}

/** A leaf certificate with CN = cn signed by ca; files `{file ?? cn}.pem` / `.key` in ca.dir. */
export async function makeCert (ca: Ca, cn: string, opts: { expired?: boolean, file?: string } = {}): Promise<Pem> {
  const base = opts.file ?? cn
  const certPath = join(ca.dir, `${base}.pem`)
  const keyPath = join(ca.dir, `${base}.key`)
  const csr = join(ca.dir, `${base}.csr`)
  await openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyPath, '-out', csr,
    '-subj', `/CN=${cn}`, '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], ca.dir)
  await openssl(['x509', '-req', '-in', csr, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', String(serial++),
    '-days', opts.expired ? '-1' : '1', '-copy_extensions', 'copy', '-out', certPath], ca.dir)
  return load(certPath, keyPath)
}

/** Copies a certificate pair over the files another test process reads (reload tests). */
export async function installPem (src: Pem, certPath: string, keyPath: string): Promise<void> {
  await writeFile(keyPath, src.key)
  await writeFile(certPath, src.cert)
}
