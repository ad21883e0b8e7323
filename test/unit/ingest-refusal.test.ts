/**
 * The ingest's transport-free refusal (ingest/refusal.ts): one table kind -> status, which
 * both fronts answer with. A refusal sent over HTTP (server.ts `httpErrorOf`) and the same
 * refusal in an MQTT results message (mqtt-consumer.ts `resultsRefusal`) carry the same
 * status, error code, message and retry delay, and the gateway reads that status as the kind
 * says (gateway/flush/status-actions.ts). The pipeline's steps throw no HttpError.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { pino } from 'pino'
import { decodeResultsHeader, encodeResultsMessage } from '../../protocol/index.ts'
import { refusalOf as gatewayReading } from '../../gateway/flush/status-actions.ts'
import { resultsRefusal } from '../../ingest/mqtt-consumer.ts'
import { BatchRefusal, REFUSAL_KINDS, REFUSAL_STATUS, type RefusalKind } from '../../ingest/refusal.ts'
import { httpErrorOf } from '../../ingest/server.ts'
import { ROOT } from '../helpers/index.ts'

const log = pino({ level: 'silent' })

/** What is wrong with a kind -> status table; empty when it covers every kind with an error status. */
export function tableProblems (table: Readonly<Record<string, number>>): string[] {
  const problems: string[] = []
  for (const kind of REFUSAL_KINDS) {
    const status = table[kind]
    if (status === undefined) problems.push(`${kind}: no status`)
    else if (!Number.isInteger(status) || status < 400 || status > 599) problems.push(`${kind}: ${status} is not an error status`)
  }
  for (const kind of Object.keys(table)) if (!(REFUSAL_KINDS as readonly string[]).includes(kind)) problems.push(`${kind}: not a kind`)
  return problems
}

test('REFUSAL_STATUS gives every kind an error status, and nothing else (the check can fail)', () => {
  assert.deepEqual(tableProblems(REFUSAL_STATUS), [])
  const { busy: _, ...withoutBusy } = REFUSAL_STATUS
  assert.deepEqual(tableProblems(withoutBusy), ['busy: no status'])
  assert.deepEqual(tableProblems({ ...REFUSAL_STATUS, broken: 200, gone: 410 }), ['broken: 200 is not an error status', 'gone: not a kind'])
})

/** One refusal of each kind, with and without a retry delay, as the steps make them. */
const refusals = (): BatchRefusal[] => REFUSAL_KINDS.flatMap((kind) => [
  new BatchRefusal(kind, `code_${kind}`, `refused ${kind}`, { field: 'body' }),
  new BatchRefusal(kind, `code_${kind}`, `refused ${kind} for a while`, { retryAfterMs: 1000 })
])

test('the HTTP answer and the MQTT results message of one refusal carry the same status, code, message and delay', () => {
  for (const r of refusals()) {
    const http = httpErrorOf(r)
    const mqtt = resultsRefusal(r, log)
    const wire = decodeResultsHeader(encodeResultsMessage(1, 'b1', mqtt))
    assert.equal(http.status, REFUSAL_STATUS[r.kind], r.kind)
    assert.equal(mqtt.status, http.status, `${r.kind}: MQTT status`)
    assert.equal(wire.status, http.status, `${r.kind}: status on the MQTT wire`)
    assert.deepEqual([wire.error, wire.message], [http.errorCode, http.message], r.kind)
    assert.equal(http.field, r.field)
    const ra = http.headers['retry-after']
    assert.equal(ra === undefined ? undefined : Number(ra) * 1000, wire.retryAfterMs, `${r.kind}: Retry-After and retryAfterMs`)
    assert.equal(http.retryable, r.retryable, `${r.kind}: retryable`)
  }
})

test('the answers the steps give today: statuses, Retry-After, connection close', () => {
  const store = httpErrorOf(new BatchRefusal('busy', 'store_unavailable', 'down', { retryAfterMs: 1000 }))
  assert.deepEqual([store.status, store.headers, store.closeConnection], [503, { 'retry-after': '1' }, false])
  const bomb = httpErrorOf(new BatchRefusal('too-large', 'body_too_large', 'decompressed body exceeds maxBodyBytes 10', { field: 'body' }))
  assert.deepEqual([bomb.status, bomb.headers, bomb.closeConnection, bomb.field], [413, {}, true, 'body'])
  const items = httpErrorOf(new BatchRefusal('too-large', 'too_many_items', 'x', { field: 'items' }))
  assert.equal(items.closeConnection, false)
  assert.deepEqual(resultsRefusal(new BatchRefusal('broken', 'chaos', 'injected failure (--chaos-fail-rate)'), log), { status: 500, error: 'chaos', message: 'injected failure (--chaos-fail-rate)' })
  assert.deepEqual(resultsRefusal(new Error('boom'), log), { status: 500, error: 'internal', message: 'internal error' })
})

test('the gateway reads each kind\'s status as the kind says', () => {
  const expected: Record<RefusalKind, string> = { unreadable: 'unreadable', forbidden: 'auth', 'too-large': 'too-large', unsupported: 'other', busy: 'busy', broken: 'broken' }
  for (const kind of REFUSAL_KINDS) assert.equal(gatewayReading(REFUSAL_STATUS[kind]), expected[kind], kind)
})

test('the transport-free steps throw BatchRefusal, never HttpError', () => {
  for (const file of ['pipeline.ts', 'decode.ts', 'bounds.ts', 'chaos.ts', 'mqtt-consumer.ts']) {
    const src = readFileSync(join(ROOT, 'ingest', file), 'utf8')
    assert.doesNotMatch(src, /\bHttpError\b/, `ingest/${file} names HttpError`)
  }
})
