/**
 * Issue 15, item 4: a data dir that cannot be opened is reported with its real cause, not
 * always "is another gateway using this --data-dir?". Each cause is produced for real:
 * the store owned by another user, the LOCK held by a running gateway, a file in the way, a
 * corrupt MANIFEST.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { chmod, chown, mkdir, readdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { runCli } from '../helpers/cli.ts'
import { spawnCli, tempDir } from '../helpers/index.ts'

const NOBODY = 65534

async function makeStore (dir: string): Promise<void> {
  const db = new Level(dir)
  await db.open()
  await db.put('x', 'y')
  await db.close()
}

const args = (dir: string): string[] => ['--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--data-dir', dir]

function assertFailed (r: { code: number | null, stderr: string }, re: RegExp): void {
  assert.notEqual(r.code, null, 'gateway did not exit')
  assert.notEqual(r.code, 0)
  assert.match(r.stderr, re)
  assert.doesNotMatch(r.stderr, /is another gateway using/)
}

/**
 * As root, the store belongs to `nobody` (mode 0700) and the gateway runs as root without
 * the capabilities that let root ignore permission bits (CAP_DAC_OVERRIDE,
 * CAP_DAC_READ_SEARCH: setpriv drops them all), as under a systemd unit with an empty
 * CapabilityBoundingSet. The gateway used to run as `nobody` instead, which cannot read a
 * checkout in a private directory (a `mktemp -d` or a 0700 home): it failed with
 * `Cannot find package 'tsx'` instead of the permission error. Run this way it reads the
 * checkout as its owner wherever the clone is.
 */
test('a store owned by another user: permission denied, with the owner', async (t) => {
  const root = await tempDir(t)
  const dir = join(root, 'store')
  await makeStore(dir)
  let opts: { wrap?: string[] } = {}
  const asRoot = process.getuid?.() === 0
  if (asRoot) {
    try { execFileSync('setpriv', ['--version'], { stdio: 'ignore' }) } catch { assert.fail('this test needs setpriv (Debian package util-linux) when run as root') }
    await chown(dir, NOBODY, NOBODY)
    for (const f of await readdir(dir)) await chown(join(dir, f), NOBODY, NOBODY)
    await chmod(dir, 0o700)
    opts = { wrap: ['setpriv', '--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-all', '--'] }
  } else {
    await chmod(dir, 0o555)
    t.after(() => chmod(dir, 0o755))
  }
  const r = await runCli(t, 'gateway/main.ts', args(dir), 90_000, opts)
  assertFailed(r, /--data-dir \S+ permission denied/)
  if (asRoot) assert.match(r.stderr, /owned by uid 65534, this process runs as uid 0/)
})

test('a store in use by a running gateway: its LOCK is held', async (t) => {
  const dir = join(await tempDir(t), 'store')
  await spawnCli(t, 'gateway/main.ts', args(dir))
  const r = await runCli(t, 'gateway/main.ts', args(dir), 90_000)
  assertFailed(r, /is in use by another process \(its LOCK file is held/)
})

test('a file where the data dir should be: not a directory', async (t) => {
  const file = join(await tempDir(t), 'store')
  await writeFile(file, 'not a store')
  const r = await runCli(t, 'gateway/main.ts', args(file), 90_000)
  assertFailed(r, /is not a directory/)
  const r2 = await runCli(t, 'gateway/main.ts', args(join(file, 'sub')), 90_000)
  assertFailed(r2, /is not a directory/)
})

test('a corrupt store: reported as corrupt', async (t) => {
  const dir = join(await tempDir(t), 'store')
  await mkdir(dir)
  await makeStore(dir)
  for (const f of await readdir(dir)) if (f.startsWith('MANIFEST-')) await writeFile(join(dir, f), Buffer.alloc(100, 0x5a))
  const r = await runCli(t, 'gateway/main.ts', args(dir), 90_000)
  assertFailed(r, /holds a corrupt store/)
})
