import { test } from 'node:test'
import assert from 'node:assert/strict'
import { AckCode } from '../../protocol/index.ts'
import { computeReceipts } from '../../gateway/flush/receipts.ts'
import { Backoff } from '../../gateway/flush/backoff.ts'
import { parseRetryAfter } from '../../gateway/flush/http-upstream.ts'

test('upTo is the highest seq of the settled prefix; a retry stops it; rejected are listed', () => {
  const r = computeReceipts([
    { device: 'a', boot: 1, seq: 1, code: AckCode.Stored },
    { device: 'b', boot: 1, seq: 7, code: AckCode.Duplicate },
    { device: 'a', boot: 1, seq: 2, code: AckCode.Rejected },
    { device: 'a', boot: 1, seq: 3, code: AckCode.Stored },
    { device: 'a', boot: 1, seq: 4, code: AckCode.Retry },
    { device: 'a', boot: 1, seq: 5, code: AckCode.Stored },
    { device: 'c', boot: null, seq: null, code: AckCode.Stored },
    { device: 'd', boot: 1, seq: 1, code: AckCode.Retry }
  ])
  assert.deepEqual(r.get('a'), [{ boot: 1, upTo: 3, rejected: [2] }])
  assert.deepEqual(r.get('b'), [{ boot: 1, upTo: 7, rejected: [] }])
  assert.equal(r.has('c'), false, 'no seq, no receipt')
  assert.equal(r.has('d'), false, 'nothing settled, no receipt')
})

test('one receipt per boot of a device', () => {
  const r = computeReceipts([
    { device: 'a', boot: 1, seq: 9, code: AckCode.Stored },
    { device: 'a', boot: '2', seq: 1, code: AckCode.Stored },
    { device: 'a', boot: 2, seq: 4, code: AckCode.Stored }
  ])
  assert.deepEqual(r.get('a'), [{ boot: 1, upTo: 9, rejected: [] }, { boot: '2', upTo: 1, rejected: [] }, { boot: 2, upTo: 4, rejected: [] }])
})

test('backoff grows exponentially with jitter, bounded, and resets', () => {
  const b = new Backoff(100, 1000, () => 1)
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [100, 200, 400, 800, 1000, 1000])
  b.reset()
  assert.equal(b.next(), 100)
  const lo = new Backoff(100, 1000, () => 0)
  assert.deepEqual([lo.next(), lo.next()], [50, 100])
})

test('Retry-After in seconds or as an HTTP date', () => {
  assert.equal(parseRetryAfter('3'), 3000)
  assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6000)
  assert.equal(parseRetryAfter('soon'), undefined)
  assert.equal(parseRetryAfter(undefined), undefined)
})
