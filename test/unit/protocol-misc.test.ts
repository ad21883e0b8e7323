import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AckCode, AckCodeName, isFinal, normalizeCode, PROTOCOL_VERSION } from '../../protocol/codes.ts'
import { fnv1a32, partitionOf } from '../../protocol/hash.ts'
import { DEVICE_ID_RE, isValidDeviceId, parseDeviceTopic, readingsTopic, receiptsTopic } from '../../protocol/topics.ts'
import { ConfigError, DecodeError, EdgeError, StoreError, UpstreamError, ValidationError } from '../../protocol/errors.ts'

// The partition hash places items on disk (docs/design.md section 5): a store created by one
// build must be readable by the next, so these values are pinned, not recomputed.
test('fnv1a32 matches the published FNV-1a 32-bit test vectors', () => {
  assert.equal(fnv1a32(''), 0x811c9dc5)
  assert.equal(fnv1a32('a'), 0xe40c292c)
  assert.equal(fnv1a32('foobar'), 0xbf9cf968)
})

test('fnv1a32 hashes UTF-8 bytes, not UTF-16 code units', () => {
  assert.equal(fnv1a32('ü'), 0x119dd44a) // 0xc3 0xbc
  assert.notEqual(fnv1a32('ü'), fnv1a32('\u00fc'.normalize('NFD')))
})

test('partitionOf is pinned for known device ids (on-disk contract)', () => {
  const pinned: [string, number, number][] = [
    ['dev-1', 6, 6], ['sensor-0001', 5, 5], ['gw.kitchen_7', 7, 7], ['a', 4, 12], ['foobar', 0, 8], ['', 5, 5]
  ]
  for (const [id, p8, p16] of pinned) {
    assert.equal(partitionOf(id, 8), p8, `partitionOf(${JSON.stringify(id)}, 8)`)
    assert.equal(partitionOf(id, 16), p16, `partitionOf(${JSON.stringify(id)}, 16)`)
  }
})

test('partitionOf is stable across calls and always in range', () => {
  for (let i = 0; i < 1000; i++) {
    const id = `device-${i}`
    const p = partitionOf(id, 8)
    assert.ok(Number.isInteger(p) && p >= 0 && p < 8)
    assert.equal(partitionOf(id, 8), p)
    assert.equal(partitionOf(id, 1), 0)
  }
  // a hash above 2^31 must not go negative (>>> 0), or the modulo would be negative
  assert.ok(fnv1a32('a') > 0x7fffffff)
  assert.equal(partitionOf('a', 7), 0xe40c292c % 7)
})

test('partitionOf spreads 10,000 device ids roughly evenly over 8 partitions', () => {
  const counts = new Array<number>(8).fill(0)
  for (let i = 0; i < 10_000; i++) counts[partitionOf(`sensor-${String(i).padStart(5, '0')}`, 8)]!++
  // expected 1250 each; sd ~33: 1250 +- 15% is > 5 sigma
  for (const [p, c] of counts.entries()) assert.ok(c > 1062 && c < 1438, `partition ${p} got ${c} of 10000: ${counts.join(',')}`)
})

test('topic helpers build the section 3 topic names', () => {
  assert.equal(readingsTopic('dev-1'), 'devices/dev-1/readings')
  assert.equal(receiptsTopic('dev-1'), 'devices/dev-1/receipts')
  assert.deepEqual(parseDeviceTopic(readingsTopic('dev-1')), { deviceId: 'dev-1', kind: 'readings' })
  assert.deepEqual(parseDeviceTopic(receiptsTopic('a.b_c')), { deviceId: 'a.b_c', kind: 'receipts' })
})

test('parseDeviceTopic edge cases', () => {
  assert.equal(parseDeviceTopic('sensors/dev-1/readings'), null)
  assert.equal(parseDeviceTopic('device/dev-1/readings'), null)
  assert.equal(parseDeviceTopic('/devices/dev-1/readings'), null)
  assert.equal(parseDeviceTopic('Devices/dev-1/readings'), null)
  assert.deepEqual(parseDeviceTopic('devices/dev-1'), { deviceId: 'dev-1', kind: 'other' })
  assert.deepEqual(parseDeviceTopic('devices/'), { deviceId: '', kind: 'other' })
  assert.deepEqual(parseDeviceTopic('devices//readings'), { deviceId: '', kind: 'readings' })
  assert.deepEqual(parseDeviceTopic('devices/dev-1/readings/extra'), { deviceId: 'dev-1', kind: 'other' })
  assert.deepEqual(parseDeviceTopic('devices/dev-1/readings/'), { deviceId: 'dev-1', kind: 'other' })
  assert.deepEqual(parseDeviceTopic('devices/dev-1/Readings'), { deviceId: 'dev-1', kind: 'other' })
  assert.deepEqual(parseDeviceTopic('devices/dev-1/'), { deviceId: 'dev-1', kind: 'other' })
  // wildcards and invalid ids are returned by name so the ACL can refuse them
  assert.deepEqual(parseDeviceTopic('devices/+/readings'), { deviceId: '+', kind: 'readings' })
  assert.deepEqual(parseDeviceTopic('devices/#'), { deviceId: '#', kind: 'other' })
  assert.deepEqual(parseDeviceTopic('devices/bad id/readings'), { deviceId: 'bad id', kind: 'readings' })
})

test('isValidDeviceId follows ^[A-Za-z0-9._-]{1,64}$', () => {
  for (const ok of ['a', 'dev-1', 'A.b_c-9', 'x'.repeat(64), '...', '-']) assert.equal(isValidDeviceId(ok), true, ok)
  for (const bad of ['', 'x'.repeat(65), 'dev 1', 'dev/1', 'dev+1', 'dev#', 'dév', 'dev\n', 'a:b', '\u0000']) {
    assert.equal(isValidDeviceId(bad), false, JSON.stringify(bad))
  }
  for (const notString of [undefined, null, 1, ['a'], { id: 'a' }]) assert.equal(isValidDeviceId(notString), false)
  assert.equal(DEVICE_ID_RE.test('dev-1\n'), false) // $ must not match before a trailing newline
})

test('AckCode values and names are the section 6 contract', () => {
  assert.deepEqual({ ...AckCode }, { Stored: 0, Duplicate: 1, Retry: 2, Rejected: 3 })
  assert.deepEqual({ ...AckCodeName }, { 0: 'stored', 1: 'duplicate', 2: 'retry', 3: 'rejected' })
  assert.equal(PROTOCOL_VERSION, 1)
})

test('normalizeCode: known codes pass, anything else is retry', () => {
  assert.equal(normalizeCode(0), AckCode.Stored)
  assert.equal(normalizeCode(1), AckCode.Duplicate)
  assert.equal(normalizeCode(2), AckCode.Retry)
  assert.equal(normalizeCode(3), AckCode.Rejected)
  for (const other of [4, -1, 255, 0.5, NaN, '0', '3', 0n, 3n, null, undefined, true, [0], { code: 0 }]) {
    assert.equal(normalizeCode(other), AckCode.Retry, String(other))
  }
})

test('isFinal: only retry keeps the item', () => {
  assert.equal(isFinal(AckCode.Stored), true)
  assert.equal(isFinal(AckCode.Duplicate), true)
  assert.equal(isFinal(AckCode.Rejected), true)
  assert.equal(isFinal(AckCode.Retry), false)
})

test('error classes: names, fields, retryable and cause', () => {
  const cause = new Error('root')
  const v = new ValidationError('values.t', 'must be finite', { cause })
  assert.ok(v instanceof EdgeError && v instanceof Error)
  assert.equal(v.name, 'ValidationError')
  assert.equal(v.field, 'values.t')
  assert.equal(v.message, 'values.t: must be finite')
  assert.equal(v.retryable, false)
  assert.equal(v.cause, cause)
  assert.equal(new ValidationError('', 'whole thing').message, 'whole thing')
  const d = new DecodeError('bad')
  assert.ok(d instanceof EdgeError)
  assert.equal(d.name, 'DecodeError')
  assert.equal(d.retryable, false)
  assert.equal('cause' in d, false)
  const c = new ConfigError('mqttPort', 'must be in 0..65535')
  assert.equal(c.name, 'ConfigError')
  assert.equal(c.field, 'mqttPort')
  assert.match(c.message, /^config mqttPort: /)
  const s = new StoreError('write failed')
  assert.deepEqual([s.name, s.retryable], ['StoreError', true])
  const u = new UpstreamError('no answer', { status: 0 })
  assert.deepEqual([u.name, u.status, u.retryable], ['UpstreamError', 0, true])
  assert.equal(new UpstreamError('forbidden', { status: 403, retryable: false }).retryable, false)
})
