/**
 * PostgreSQL for tests, with no manual setup: one throwaway server per test file (initdb
 * in a temp dir, 127.0.0.1, a free port; scripts/throwaway-postgres.ts), started on first
 * use and stopped when the file's tests end; a fresh database per test.
 *
 * Missing binaries make the test FAIL with the install command, never skip.
 */
import { randomBytes } from 'node:crypto'
import { after } from 'node:test'
import { ThrowawayPostgres } from '../../scripts/throwaway-postgres.ts'

let shared: Promise<ThrowawayPostgres> | null = null
// Registered at import (file level), not inside the first test that uses the server.
after(async () => { const s = await shared?.catch(() => null); await s?.stop() })

/** The file's shared server (started once). */
export function sharedPostgres (): Promise<ThrowawayPostgres> {
  if (!shared) {
    shared = ThrowawayPostgres.start()
  }
  return shared
}

/** A fresh, empty database on the file's shared server; returns its URL. */
export async function freshDatabase (): Promise<string> {
  const srv = await sharedPostgres()
  return srv.createDatabase(`t_${randomBytes(6).toString('hex')}`)
}

/** A server of the test's own (for crash tests that kill the postmaster), stopped after it. */
export async function ownPostgres (t: { after: (fn: () => unknown) => void }): Promise<ThrowawayPostgres> {
  const srv = await ThrowawayPostgres.start()
  t.after(() => srv.stop())
  return srv
}
