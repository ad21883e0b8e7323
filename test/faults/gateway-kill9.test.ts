/**
 * kill -9 of the real gateway CLI: everything acknowledged survives, counters
 * continue, and no seq is ever reused, also after the buffer was emptied and the gateway
 * restarted.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { partitionOf } from '../../protocol/index.ts'
import { spawnCli, tempDir, waitFor } from '../helpers/index.ts'
import { connectDevice, publish, reading } from '../helpers/gateway.ts'
import { startFakeUpstream } from '../helpers/fake-upstream.ts'

type Status = { buffered: { items: number }, partitions: Array<{ p: number, depth: number, nextSeq: number }> }

async function status (adminPort: unknown): Promise<Status> {
  const r = await fetch(`http://127.0.0.1:${String(adminPort)}/status`)
  return await r.json() as Status
}

for (const durability of ['process', 'power'] as const) {
  test(`durability=${durability}: 5,000 acknowledged readings survive kill -9; seqs are never reused`, async (t) => {
    const dir = await tempDir(t)
    const args = ['--data-dir', dir, '--mqtt-port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--durability', durability]
    let gw = await spawnCli(t, 'gateway/main.ts', args)
    await Promise.all(Array.from({ length: 20 }, async (_, d) => {
      const c = await connectDevice(t, gw.ready.mqttPort as number, `k9-${d}`)
      const ps: Promise<void>[] = []
      for (let i = 1; i <= 250; i++) ps.push(publish(c, `devices/k9-${d}/readings`, reading(i)))
      await Promise.all(ps)
      c.end(true)
    }))
    const before = await status(gw.ready.adminPort)
    assert.equal(before.buffered.items, 5000)
    await gw.kill('SIGKILL')

    // restart on the same data dir: all 5,000 there, counters continue
    gw = await spawnCli(t, 'gateway/main.ts', args)
    const after = await status(gw.ready.adminPort)
    assert.equal(after.buffered.items, 5000)
    for (const p of after.partitions) assert.ok(p.nextSeq >= before.partitions[p.p]!.nextSeq, `partition ${p.p} counter went back`)
    await gw.kill('SIGKILL')

    // drain everything to an upstream, recording every (p, s) it ever sees
    const up = await startFakeUpstream(t)
    const withUp = [...args, '--upstream', up.url, '--token', 't-pad-0123456789', '--linger-ms', '0']
    gw = await spawnCli(t, 'gateway/main.ts', withUp)
    await waitFor(async () => (await status(gw.ready.adminPort)).buffered.items === 0, { timeoutMs: 20_000, what: 'drained' })
    assert.equal(up.stored.size, 5000)
    const perDevice = new Map<string, Set<number>>()
    for (const it of up.stored.values()) {
      const s = perDevice.get(it[2]) ?? new Set()
      s.add(it[3]!)
      perDevice.set(it[2], s)
    }
    assert.equal(perDevice.size, 20)
    for (const [, seqs] of perDevice) assert.equal(seqs.size, 250)
    const maxSeq = new Map<number, number>()
    for (const it of up.stored.values()) maxSeq.set(it[0], Math.max(maxSeq.get(it[0]) ?? -1, it[1]))

    // buffer empty: kill -9, restart, publish more: new seqs are above every seq used before
    await gw.kill('SIGKILL')
    gw = await spawnCli(t, 'gateway/main.ts', withUp)
    const c = await connectDevice(t, gw.ready.mqttPort as number, 'k9-0')
    for (let i = 251; i <= 260; i++) await publish(c, 'devices/k9-0/readings', reading(i))
    await waitFor(() => up.stored.size === 5010, { timeoutMs: 10_000, what: 'new readings delivered' })
    const p0 = partitionOf('k9-0', 8)
    const fresh = [...up.stored.values()].filter((i) => i[2] === 'k9-0' && i[3]! > 250)
    assert.equal(fresh.length, 10)
    for (const it of fresh) assert.ok(it[1] > maxSeq.get(p0)!, `seq ${it[1]} reused (max before ${maxSeq.get(p0)})`)
    const keys = new Set([...up.batches.flatMap((b) => b.items.map((i) => `${b.epoch}:${i[0]}:${i[1]}:${i[2]}:${i[3]}`))])
    const ids = new Map<string, string>()
    for (const k of keys) {
      const [e, p, s, dev, seq] = k.split(':')
      const id = `${e}:${p}:${s}`
      const who = `${dev}:${seq}`
      assert.ok(!ids.has(id) || ids.get(id) === who, `(epoch, p, s) ${id} named two readings: ${ids.get(id)} and ${who}`)
      ids.set(id, who)
    }
    await gw.kill('SIGTERM')
    const exit = await gw.exited
    assert.equal(exit.code, 0, 'graceful SIGTERM exits 0')
  })
}
