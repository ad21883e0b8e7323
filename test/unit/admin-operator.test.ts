/**
 * Pieces of the operator surface without sockets: the bounded devices table,
 * the dead-letter filter, PUBACK quantiles from histogram buckets, admin cookie parsing.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { cookieValue } from '../../gateway/admin/auth.ts'
import { DeviceStats } from '../../gateway/metrics/devices.ts'
import { quantile } from '../../gateway/admin/live.ts'
import { parseFilter, parseTime } from '../../gateway/dlq/filter.ts'
import { matcher, type DeadLetter } from '../../gateway/store/dlq-reader.ts'

test('devices table: counts per device, search, and a hard bound that forgets the least recently seen', () => {
  const d = new DeviceStats(3)
  d.reading('a-1', 1); d.reading('a-1', 2); d.duplicate('a-1')
  d.reading('b-1', 7); d.deadLetter('b-1')
  d.reading('c-1', null)
  const all = d.query()
  assert.deepEqual(all.devices.map((r) => [r.device, r.lastSeq, r.readings, r.duplicates, r.deadLetters]), [['a-1', 2, 2, 1, 0], ['b-1', 7, 1, 0, 1], ['c-1', null, 1, 0, 0]])
  assert.ok(all.devices[0]!.readingsPerS > 0, 'a new device has a rate from its open window')
  assert.deepEqual(d.query({ q: 'B-' }).devices.map((r) => r.device), ['b-1'])
  d.reading('d-1', 1) // full: the first inserted (least recently seen to the 5 s grain) goes
  assert.equal(d.size, 3)
  const after = d.query()
  assert.deepEqual(after.devices.map((r) => r.device), ['b-1', 'c-1', 'd-1'])
  assert.equal(after.forgotten, 1)
  const off = new DeviceStats(0)
  off.reading('x', 1)
  assert.equal(off.size, 0)
})

test('dlq filter: fields, ages, patterns, and errors that name the field', () => {
  const now = Date.parse('2026-01-31T12:00:00Z')
  assert.equal(parseTime('since', '2h', now), now - 2 * 3600_000)
  assert.equal(parseTime('since', '2026-01-30T00:00:00Z', now), Date.parse('2026-01-30T00:00:00Z'))
  assert.equal(parseTime('until', '1769860800000', now), 1769860800000)
  assert.throws(() => parseTime('since', 'yesterday', now), /since: "yesterday" is not a time/)
  assert.throws(() => parseFilter({ colour: 'red' }), /colour: unknown filter/)
  assert.throws(() => parseFilter({ kind: 'weird' }), /kind: must be one of/)
  assert.throws(() => parseFilter({ id: '1,x' }), /id: must be record ids/)
  const f = parseFilter({ device: 'sensor-*', reason: 'REJECTED', kind: 'item', since: '1h', id: '3,4' }, now)
  const rec = (over: Partial<DeadLetter>): DeadLetter => ({ id: 3, kind: 'item', reason: 'rejected by the ingest: x', at: now - 60_000, device: 'sensor-7', raw: Buffer.alloc(0), ...over })
  const m = matcher(f)
  assert.equal(m(rec({})), true)
  assert.equal(m(rec({ device: 'other-7' })), false)
  assert.equal(m(rec({ id: 5 })), false)
  assert.equal(m(rec({ at: now - 2 * 3600_000 })), false)
  assert.equal(m(rec({ reason: 'invalid' })), false)
  assert.equal(m(rec({ kind: 'payload' })), false)
  assert.equal(matcher({ device: 'sensor-7' })(rec({ device: 'sensor-70' })), false, 'without * the device is exact')
})

test('PUBACK quantiles from cumulative buckets (linear inside a bucket, ms out)', () => {
  const le = [0.001, 0.002, 0.005, Infinity]
  assert.equal(quantile(0.5, le, [0, 0, 0, 0]), null)
  assert.equal(quantile(0.5, le, [10, 10, 10, 10]), 0.5)
  assert.equal(quantile(0.5, le, [0, 10, 10, 10]), 1.5)
  assert.ok(Math.abs(quantile(0.99, le, [0, 0, 100, 100])! - (2 + 3 * 0.99)) < 1e-9)
  assert.equal(quantile(0.99, le, [0, 0, 0, 5]), 5, 'past the last finite bound: that bound')
})

test('admin cookie parsing', () => {
  assert.equal(cookieValue('a=1; gw_admin=s%3Dx; b=2', 'gw_admin'), 's=x')
  assert.equal(cookieValue('gw_admin_x=1', 'gw_admin'), undefined)
  assert.equal(cookieValue(undefined, 'gw_admin'), undefined)
})
