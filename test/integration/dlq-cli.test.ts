/**
 * Dead-letter round trip with the real CLIs (issue 12): readings rejected by an ingest with
 * a bad rule (`--chaos-reject-rate 1`) are listed (through the running gateway) and exported (from its data dir once stopped) with
 * `gateway dlq`; the CLI
 * refuses a data dir a running gateway holds; after the rule is fixed (the ingest restarted
 * without it) `gateway dlq replay` on the stopped gateway's data dir re-queues them, and
 * the restarted gateway delivers each one: stored exactly once.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { connectDevice, publish, reading } from '../helpers/gateway.ts'
import { runDlq } from '../helpers/cli.ts'
import { spawnCli, tempDir, waitFor } from '../helpers/index.ts'

test('dlq CLI: rejected by a bad rule, listed, exported, replayed after the fix, stored exactly once', async (t) => {
  const dir = await tempDir(t, 'dlq-cli-')
  const gwDir = join(dir, 'gateway')
  const ingestArgs = ['--data-dir', join(dir, 'ingest'), '--token', 'gw1:secret-pad-01234']
  let ingest = await spawnCli(t, 'ingest/main.ts', ['--port', '0', ...ingestArgs, '--chaos-reject-rate', '1'])
  const port = String(ingest.ready.port)
  const upstream = `http://127.0.0.1:${port}`
  const gwArgs = ['--gateway-id', 'gw1', '--data-dir', gwDir, '--mqtt-port', '0', '--admin-port', '0', '--upstream', upstream, '--token', 'secret-pad-01234', '--linger-ms', '50', '--host', '127.0.0.1']
  let gw = await spawnCli(t, 'gateway/main.ts', gwArgs)
  const admin = `http://127.0.0.1:${String(gw.ready.adminPort)}`
  const dev = await connectDevice(t, Number(gw.ready.mqttPort), 'rt-dev')
  for (let seq = 1; seq <= 8; seq++) await publish(dev, 'devices/rt-dev/readings', reading(seq))
  await dev.endAsync()
  await waitFor(async () => (await (await fetch(admin + '/status')).json() as { dlq: { items: number } }).dlq.items === 8, { what: '8 dead letters', timeoutMs: 20_000 })

  const locked = await runDlq(t, ['list', '--data-dir', gwDir])
  assert.equal(locked.code, 3, locked.stderr)
  assert.match(locked.stderr, /locked: a gateway is running on it.*--admin/)

  const listed = await runDlq(t, ['list', '--admin', admin, '--device', 'rt-*', '--reason', 'INJECTED'])
  assert.equal(listed.code, 0, listed.stderr)
  const rows = listed.stdout.trim().split('\n')
  assert.equal(rows.length, 8)
  assert.ok(rows.every((r) => /item\s+rt-dev\s+rejected by the ingest: injected rejected/.test(r)), rows[0])
  // fix the rule: the ingest restarts without it (same port, same store); meanwhile the
  // stopped gateway's data dir is exported and replayed directly
  await gw.kill('SIGTERM')
  await ingest.kill('SIGTERM')
  const out = join(dir, 'dead.jsonl')
  const [exported, restarted] = await Promise.all([
    runDlq(t, ['export', '--data-dir', gwDir, '--out', out]),
    spawnCli(t, 'ingest/main.ts', ['--port', port, ...ingestArgs])
  ])
  ingest = restarted
  assert.equal(exported.code, 0, exported.stderr)
  const lines = (await readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { device: string, kind: string, reading: { seq: number }, raw: string })
  assert.deepEqual(lines.map((l) => l.reading.seq), [1, 2, 3, 4, 5, 6, 7, 8])
  assert.ok(lines.every((l) => l.device === 'rt-dev' && l.kind === 'item' && l.raw.length > 0))
  // a dry run says what it would purge, not "purged": the 8 records are still there after it
  const dry = await runDlq(t, ['purge', '--data-dir', gwDir, '--device', 'rt-dev', '--dry-run'])
  assert.equal(dry.code, 0, dry.stderr)
  assert.deepEqual(JSON.parse(dry.stdout), { matched: 8, purged: 0, wouldPurge: 8, dryRun: true })
  assert.match(dry.stderr, /dry run: would purge 8 records; nothing deleted/)
  const replay = await runDlq(t, ['replay', '--data-dir', gwDir])
  assert.equal(replay.code, 0, replay.stderr)
  assert.deepEqual(JSON.parse(replay.stdout), { matched: 8, replayed: 8, invalid: [], invalidCount: 0, bufferFull: false, dryRun: false })

  gw = await spawnCli(t, 'gateway/main.ts', gwArgs)
  const admin2 = `http://127.0.0.1:${String(gw.ready.adminPort)}`
  await waitFor(async () => (await (await fetch(admin2 + '/status')).json() as { buffered: { items: number } }).buffered.items === 0, { what: 'replayed items delivered', timeoutMs: 20_000 })
  const got = await (await fetch(`${upstream}/v1/devices/rt-dev/readings`)).json() as { readings: { seq: number }[] }
  assert.deepEqual(got.readings.map((r) => r.seq), [1, 2, 3, 4, 5, 6, 7, 8], 'each replayed reading stored exactly once')
  const stats = await (await fetch(`${upstream}/v1/stats`)).json() as { stored: number, rejected: number }
  assert.deepEqual([stats.stored, stats.rejected], [8, 8])
  assert.equal((await (await fetch(admin2 + '/status')).json() as { dlq: { items: number } }).dlq.items, 0)
})
