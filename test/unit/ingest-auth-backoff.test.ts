/** The ingest's wrong-token back-off per address: bans, cap, forgetting, bounded memory. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { addressKey, AuthBackoff, FORGET_MS } from '../../ingest/auth-backoff.ts'

test('AuthBackoff: free failures, then doubling bans up to the cap; forgotten after FORGET_MS', () => {
  let now = 1_000_000
  const b = new AuthBackoff({ freeFailures: 3, baseMs: 1000, maxMs: 5000, maxAddresses: 100 }, () => now)
  assert.deepEqual([b.fail('a'), b.fail('a'), b.fail('a')], [0, 0, 0])
  assert.equal(b.bannedFor('a'), 0)
  assert.equal(b.fail('a'), 1000)
  assert.equal(b.bannedFor('a'), 1000)
  assert.equal(b.bannedFor('b'), 0, 'another address is not held back')
  now += 400
  assert.equal(b.bannedFor('a'), 600)
  assert.deepEqual([b.fail('a'), b.fail('a'), b.fail('a')], [2000, 4000, 5000], 'doubles, capped at maxMs')
  now += 5000
  assert.equal(b.bannedFor('a'), 0)
  assert.equal(b.fail('a'), 5000, 'the count is kept while failures keep coming')
  now += FORGET_MS + 1
  assert.equal(b.bannedFor('a'), 0)
  assert.equal(b.fail('a'), 0, 'forgotten: free failures again')
})

test('AuthBackoff: at most maxAddresses entries, least recently failed forgotten first', () => {
  const b = new AuthBackoff({ freeFailures: 0, baseMs: 1000, maxMs: 1000, maxAddresses: 16 }, () => 5)
  b.fail('old')
  for (let i = 0; i < 15; i++) b.fail(`x${i}`)
  b.fail('old') // touched: now the most recent
  for (let i = 0; i < 10_000; i++) b.fail(`flood-${i}`)
  assert.equal(b.tracked, 16)
  assert.ok(b.evictions >= 10_000)
  assert.equal(b.bannedFor('x0'), 0, 'forgotten')
})

test('AuthBackoff: base 0 turns it off', () => {
  const b = new AuthBackoff({ freeFailures: 0, baseMs: 0, maxMs: 60_000, maxAddresses: 16 })
  for (let i = 0; i < 50; i++) assert.equal(b.fail('a'), 0)
  assert.equal(b.bannedFor('a'), 0)
  assert.equal(b.tracked, 0)
})

test('addressKey: IPv4, IPv4-mapped as IPv4, IPv6 by /64', () => {
  assert.equal(addressKey('10.0.0.1'), '10.0.0.1')
  assert.equal(addressKey('::ffff:10.0.0.1'), '10.0.0.1')
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
  assert.equal(addressKey('2001:db8:1:2:bbbb::9'), '2001:db8:1:2::/64')
  assert.equal(addressKey('::1'), '0:0:0:0::/64')
  assert.equal(addressKey(undefined), 'unknown')
})
