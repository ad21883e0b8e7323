/**
 * What the limits remember about offenders stays small: a CONNECT refused for an over-long
 * client id used to keep the whole id (up to a packet's size) in the "log once" memory,
 * 10,000 of them per limit; under bench/fuzz.ts that grew the heap by ~2 MB every 10 s.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import pino from 'pino'
import type { Client } from 'aedes'
import type { LogOnce } from '../../common/index.ts'
import { Metrics } from '../../gateway/metrics/index.ts'
import { defaultLimits } from '../../gateway/broker/limits-config.ts'
import { Limits } from '../../gateway/broker/limits.ts'

test('2,000 refused 8 KB client ids leave at most ~100 characters each in the offender memory, and one warn line each', () => {
  const lines: string[] = []
  const log = pino({ level: 'warn' }, { write: (l: string) => { lines.push(l) } })
  const limits = new Limits(defaultLimits(), new Metrics({ defaultMetrics: false }), log)
  const client = { conn: { remoteAddress: '192.0.2.1' } } as unknown as Client
  for (let i = 0; i < 2000; i++) {
    const refused = limits.checkConnect(client, { clientId: `${i}-`.padEnd(8192, 'c') })
    assert.equal(refused?.limit, 'client_id_bytes')
  }
  const remembered = (limits as unknown as { offenders: { logged: Record<string, LogOnce> } }).offenders.logged.client_id_bytes!
  assert.equal(remembered.size, 2000, 'each distinct offender remembered once')
  let chars = 0
  for (const who of remembered.keys()) chars += who.length
  assert.ok(chars <= 2000 * 100, `offender memory holds ${chars} characters of client ids`)
  assert.equal(lines.length, 2000)
  assert.match(lines[0]!, /"clientId":"0-c+\.\.\. \(8192 chars\)"/)
  assert.ok(lines.every((l) => l.length < 1000), 'log lines carry the shortened id')
  limits.close?.()
})
