/**
 * Certificate revocation lists for the TLS tests (`--tls-crl`), made with `openssl ca` from a
 * CA of certs.ts: a fresh little CA database each time, the given certificates revoked in
 * it, and a PEM CRL valid for a day written to `{ca.dir}/{file}.crl`.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Ca, Pem } from './certs.ts'

const run = promisify(execFile)

async function openssl (args: string[], cwd: string): Promise<void> {
  try { await run('openssl', args, { cwd }) } catch (err) {
    throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`)
  }
}

/** A CRL of `ca` revoking `revoked` (none: an empty CRL); returns its path and PEM text. */
export async function makeCrl (ca: Ca, revoked: Pem[], file: string): Promise<{ path: string, pem: string }> {
  const db = await mkdtemp(join(ca.dir, 'crl-db-'))
  await writeFile(join(db, 'index.txt'), '')
  await writeFile(join(db, 'crlnumber'), '01\n')
  await writeFile(join(db, 'ca.cnf'), '[ ca ]\ndefault_ca = CA_default\n[ CA_default ]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 1\n')
  const base = ['-config', 'ca.cnf', '-keyfile', ca.keyPath, '-cert', ca.certPath]
  for (const r of revoked) await openssl(['ca', ...base, '-revoke', r.certPath], db)
  const path = join(ca.dir, `${file}.crl`)
  await openssl(['ca', ...base, '-gencrl', '-out', path], db)
  return { path, pem: await readFile(path, 'utf8') }
}
