import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AckCode } from '../../protocol/index.ts'
import { GroupCommit } from '../../common/index.ts'
import { mapAcks } from '../../gateway/flush/ack-mapper.ts'
import { ruleFor } from '../../gateway/flush/status-actions.ts'
import { Partition } from '../../gateway/store/partition.ts'

type G = { items: string[], told: string[] }

test('group commit: a failed write fails the group behind it, then recover runs before the next write', async () => {
  const events: string[] = []
  let fail = true
  let recoveries = 0
  const gc: GroupCommit<G> = new GroupCommit<G>({
    create: () => ({ items: [], told: [] }),
    empty: (g) => g.items.length === 0,
    write: async (g) => {
      events.push(`write ${g.items.join(',')}`)
      if (fail) {
        // a submission that arrives during the failing write lands in the group behind it
        gc.current.items.push('b'); gc.schedule()
        throw new Error('disk full')
      }
    },
    settle: (g, err, behind) => { events.push(`settle ${g.items.join(',')} ${err ? 'failed' : 'ok'}${behind ? ` behind ${behind.items.join(',')}` : ''}`) },
    recover: async () => { recoveries++; events.push(`recover ${recoveries}`); fail = false; return recoveries >= 2 }
  })
  gc.current.items.push('a'); gc.schedule()
  await new Promise((r) => setTimeout(r, 20))
  await gc.idle()
  gc.current.items.push('c'); gc.schedule()
  await gc.idle()
  assert.deepEqual(events, ['write a', 'settle a failed behind b', 'recover 1', 'recover 2', 'write c', 'settle c ok'])
  await gc.close()
})

test('partition: the flusher hold is a named state; deletes landing during a read stay skipped until it ends', () => {
  const p = new Partition(0, { next: 10, items: 10, bytes: 100, head: 0 })
  assert.equal(p.holdState, 'idle')
  assert.equal(p.evictableFrom(), 0)
  p.markSettling(3)
  p.beginRead()
  assert.equal(p.holds(999), true, 'a read under way may hold anything')
  assert.equal(p.evictableFrom(), null)
  p.settled(3)
  assert.equal(p.isSettling(3), true, 'the read snapshot still has 3')
  p.endRead(5)
  assert.equal(p.isSettling(3), false)
  assert.equal(p.holdState, 'holding')
  assert.equal(p.holds(5), true)
  assert.equal(p.holds(6), false)
  assert.equal(p.evictableFrom(), 6)
  p.release()
  assert.equal(p.inFlight, false)
  assert.equal(p.raiseHead(4), true)
  assert.equal(p.raiseHead(2), false, 'the floor never moves down')
})

test('ack mapper: stored and duplicate delete, rejected dead-letters with the reason, missing and unknown codes retry', () => {
  const raws = [Buffer.from([1]), Buffer.from([2, 2]), Buffer.from([3]), Buffer.from([4]), Buffer.from([5])]
  const m = mapAcks(1, [10, 11, 12, 13, 14], raws, [[1, 10, 0], [1, 11, 1], [1, 12, 3, 'bad'], [1, 13, 9], [2, 14, 0]], false)
  assert.deepEqual(m.deletes, [{ s: 10, size: 1 }, { s: 11, size: 2 }])
  assert.deepEqual(m.dead.map((d) => [d.s, d.reason]), [[12, 'rejected by the ingest: bad']])
  assert.equal(m.retries, 2, 'unknown code 9 and the item answered for another partition')
  assert.equal(m.byCode.get(AckCode.Retry), 1)
})

test('status table: each HTTP answer has its action', () => {
  assert.equal(ruleFor(200).action, 'per-item')
  assert.equal(ruleFor(400).action, 'bisect')
  assert.equal(ruleFor(413).action, 'split')
  assert.equal(ruleFor(401).action, 'pause-auth')
  assert.equal(ruleFor(403).health, 'auth-failed')
  assert.equal(ruleFor(429).action, 'retry-after')
  assert.deepEqual([ruleFor(503).action, ruleFor(503).failover], ['retry-after', false])
  assert.deepEqual([ruleFor(502).action, ruleFor(502).failover], ['backoff', true])
  assert.deepEqual([ruleFor(404).action, ruleFor(404).failover], ['backoff', false])
})
