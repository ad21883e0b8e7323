import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { LevelDbSink } from '../../ingest/sinks/leveldb.ts'
import { tempDir } from '../helpers/index.ts'
import { item, req, runSinkContract } from './sink-contract.ts'

runSinkContract('leveldb', async (t) => {
  const dir = join(await tempDir(t, 'ingest-sink-'), 'db')
  return { open: () => LevelDbSink.open({ dataDir: dir }) }
})

test('leveldb: dedup state stays bounded as floors advance', async (t) => {
  const sink = await LevelDbSink.open({ dataDir: join(await tempDir(t, 'ingest-sink-'), 'db') })
  t.after(() => sink.close())
  const perBatch = 100
  let maxSeqs = 0
  for (let b = 0; b < 50; b++) {
    // The gateway's floor trails its head by one batch: everything older was acked.
    const items = Array.from({ length: perBatch }, (_, i) => item(b % 2, 1000 + b * perBatch + i))
    const floor = 1000 + Math.max(0, b - 2) * perBatch
    await sink.storeBatch(req(items, { floors: [[0, floor], [1, floor]] }))
    maxSeqs = Math.max(maxSeqs, sink.dedupState().seqs)
  }
  const st = sink.dedupState()
  assert.equal(st.partitions, 2)
  assert.ok(maxSeqs <= 3 * perBatch, `tracked seqs ${maxSeqs} stay within the gateway's window, not the 5000 stored`)
  assert.ok(st.runs <= 3, `runs ${st.runs}`)
  assert.equal((await sink.stats()).stored, 5000)
})

test('leveldb: a store opened twice is refused (LevelDB lock), with the path in the error', async (t) => {
  const dir = join(await tempDir(t, 'ingest-sink-'), 'db')
  const sink = await LevelDbSink.open({ dataDir: dir })
  t.after(() => sink.close())
  await assert.rejects(LevelDbSink.open({ dataDir: dir }), (err: Error) => err.name === 'StoreError' && err.message.includes(dir))
})
