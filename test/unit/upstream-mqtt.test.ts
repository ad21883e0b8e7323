/**
 * The MQTT upstream's wire contract (protocol/upstream-mqtt.ts) and its startup
 * checks: topic templates, compression and version told by the first bytes, the results
 * message both ways, and the config errors that name their field.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { deflateSync, gzipSync } from 'node:zlib'
import { parseGatewayConfig } from '../../gateway/index.ts'
import { resultsBoundBytes, screenResults } from '../../gateway/flush/mqtt-results.ts'
import { pubackRefusal } from '../../gateway/flush/mqtt-upstream.ts'
import { Refusal } from '../../gateway/flush/answer.ts'
import {
  AckCode, ConfigError, decodeResponse, decodeResultsHeader, encodeBatch, encodeBatchV2, encodeCbor, encodeResultsMessage,
  checkTopicTemplate, fillTopic, parseTopic, peekResults, sniffEncoding, sniffVersion, topicFilter, type BatchItem, type ItemResult
} from '../../protocol/index.ts'

const T = 'gateways/{gatewayId}/batches/{partition}'

test('topic templates: fill, filter and parse back', () => {
  assert.equal(fillTopic(T, 'gw7', 3), 'gateways/gw7/batches/3')
  assert.equal(topicFilter(T), 'gateways/+/batches/+')
  assert.deepEqual(parseTopic(T, 'gateways/gw7/batches/3'), { gatewayId: 'gw7', partition: 3 })
  assert.equal(parseTopic(T, 'gateways/gw7/batches/x'), null)
  assert.equal(parseTopic(T, 'gateways/gw7/results'), null)
  assert.equal(parseTopic(T, 'other/gw7/batches/3'), null)
  assert.deepEqual(parseTopic('devices/{gatewayId}/messages/events/', 'devices/gw7/messages/events/'), { gatewayId: 'gw7', partition: null })
})

test('topic templates: wildcards, partial levels and a missing {gatewayId} are refused, naming the field', () => {
  const bad = (tpl: string, re: RegExp, partition = true): void => assert.throws(() => checkTopicTemplate('upstreamTopic', tpl, { partition }), (e: Error) => e.message.startsWith('upstreamTopic: ') && re.test(e.message))
  bad('gateways/+/batches', /wildcards/)
  bad('gateways/#', /wildcards/)
  bad('gateways/batches', /must contain \{gatewayId\}/)
  bad('gateways/gw-{gatewayId}/b', /whole topic level/)
  bad('{gatewayId}/{gatewayId}', /once/)
  bad('gateways/{gatewayId}/results/{partition}', /has no \{partition\}/, false)
  checkTopicTemplate('upstreamTopic', T, { partition: true })
})

test('sniffing: gzip and zlib are told from a CBOR batch by the first bytes, v2 from v1 by the v key', () => {
  const item: BatchItem = [0, 1, 'd1', 1, 1, 1, 1, { t: 1 }]
  const v1 = encodeBatch({ gateway: 'g', epoch: 'e', batch: 'b', floors: [], items: [item] })
  const v2 = encodeBatchV2({ gateway: 'g', epoch: 'e', batch: 'b', floors: [] }, [item])
  assert.equal(sniffEncoding(v1), 'identity')
  assert.equal(sniffEncoding(v2), 'identity')
  assert.equal(sniffEncoding(gzipSync(v1)), 'gzip')
  assert.equal(sniffEncoding(deflateSync(v1)), 'deflate')
  assert.equal(sniffEncoding(deflateSync(v1, { level: 1 })), 'deflate')
  // every CBOR map head is identity (a map of 8 pairs, 0xa8, has zlib's CM nibble)
  for (let b = 0xa0; b <= 0xbf; b++) for (let c = 0; c < 256; c++) assert.equal(sniffEncoding(Buffer.from([b, c])), 'identity', `${b} ${c}`)
  assert.equal(sniffVersion(v1), 1)
  assert.equal(sniffVersion(v2), 2)
})

test('results message: per-item results are the HTTP answer body; a whole-batch refusal carries its status', () => {
  const ok = encodeResultsMessage(1, 'b1', { results: [[0, 5, AckCode.Stored], [0, 6, AckCode.Rejected, 'bad value']] })
  assert.deepEqual(decodeResponse(ok).results, [[0, 5, 0], [0, 6, 3, 'bad value']])
  assert.deepEqual(decodeResultsHeader(ok), { v: 1, batch: 'b1', status: 200, error: '', message: '', retryAfterMs: undefined })
  const refused = decodeResultsHeader(encodeResultsMessage(2, 'b2', { status: 503, error: 'store_unavailable', message: 'db down', retryAfterMs: 1000 }))
  assert.deepEqual(refused, { v: 2, batch: 'b2', status: 503, error: 'store_unavailable', message: 'db down', retryAfterMs: 1000 })
  assert.throws(() => decodeResultsHeader(Buffer.from('garbage')))
  assert.throws(() => decodeResultsHeader(encodeCbor({ v: 1, batch: 'x', status: 42 })), /status/)
  assert.throws(() => decodeResultsHeader(encodeCbor({ v: 1, results: [] })), /batch/)
})

test('gateway config: mqtt upstreams are checked at startup, each error naming its field', () => {
  const parse = (argv: string[]): unknown => parseGatewayConfig({ argv, env: {} })
  const err = (argv: string[], field: string, re: RegExp): void => assert.throws(() => parse(argv), (e: unknown) => e instanceof ConfigError && e.field === field && re.test(e.message))
  err(['--upstream', 'mqtt://broker.example:1883'], 'upstream', /in clear/)
  err(['--upstream', 'mqtt://127.0.0.1:1883,http://127.0.0.1:8080'], 'upstream', /mixes/)
  err(['--upstream', 'ftp://127.0.0.1'], 'upstream', /http, https, mqtt and mqtts/)
  err(['--upstream', 'mqtt://127.0.0.1:1883', '--compression', 'br', '--upstream-mqtt-version', '3.1.1'], 'compression', /first bytes/)
  err(['--upstream', 'mqtt://127.0.0.1:1883', '--upstream-topic', 'gw/+/b'], 'upstreamTopic', /wildcards/)
  err(['--upstream', 'mqtt://127.0.0.1:1883', '--upstream-ack', 'broker', '--ack-mode', 'delivered'], 'ackMode', /upstream-ack results/)
  // no token needed for a broker, and mqtts to any host is fine
  parse(['--upstream', 'mqtt://127.0.0.1:1883'])
  // MQTT 5 marks br with the content-encoding user property
  parse(['--upstream', 'mqtt://127.0.0.1:1883', '--compression', 'br'])
  parse(['--upstream', 'mqtts://broker.example:8883', '--upstream-ack', 'broker'])
  parse(['--upstream', 'mqtt://broker.example:1883', '--allow-insecure-upstream'])
})

test('results message: the batch id and the declared entries are read from the first bytes, whatever follows', () => {
  const v1 = encodeResultsMessage(1, 'b1', { results: [[0, 5, AckCode.Stored], [0, 6, AckCode.Rejected, 'bad value']] })
  const p1 = peekResults(v1)
  assert.deepEqual(p1, { v: 1, batch: 'b1', entries: 2, entriesAt: 22 })
  assert.equal(v1[p1.entriesAt], 0x83, 'entriesAt is the head of the first entry, [0, 5, 0]')
  const v2 = encodeResultsMessage(2, 'b2', { results: [[0, 5, AckCode.Stored], [0, 6, AckCode.Stored]] })
  assert.equal(peekResults(v2)?.batch, 'b2')
  assert.equal(peekResults(v2)?.entries, 4, 'one run of four integers')
  const refusal = encodeResultsMessage(1, 'b3', { status: 503, error: 'busy', message: 'later', retryAfterMs: 1000 })
  assert.deepEqual({ ...peekResults(refusal), entriesAt: 0 }, { v: 1, batch: 'b3', entries: 0, entriesAt: 0 })
  // the rest is never read: a truncated message still gives its batch id
  assert.equal(peekResults(v1.subarray(0, v1.length - 3))?.batch, 'b1')
  // a batch id after the results cannot be had without walking them
  assert.equal(peekResults(encodeCbor({ v: 1, results: [], batch: 'b4' })), null)
  assert.equal(peekResults(Buffer.from('garbage')), null)
  assert.equal(peekResults(encodeCbor([1, 2])), null)
})

test('results message screening: late, oversized and too many are refused before decoding, in v1 and v2', () => {
  const items = (b: string): number | undefined => (b === 'mine' ? 2 : undefined)
  const ok: ItemResult[] = [[0, 1, AckCode.Stored], [0, 2, AckCode.Stored]]
  assert.deepEqual(screenResults(encodeResultsMessage(1, 'mine', { results: ok }), items, 2), { refuse: null, batch: 'mine' })
  assert.deepEqual(screenResults(encodeResultsMessage(2, 'mine', { results: ok }), items, 2), { refuse: null, batch: 'mine' })
  assert.equal(screenResults(encodeResultsMessage(1, 'other', { results: ok }), items, 2).refuse, 'late')
  const three: ItemResult[] = [...ok, [0, 3, AckCode.Stored]]
  assert.equal(screenResults(encodeResultsMessage(1, 'mine', { results: three }), items, 2).refuse, 'too_many')
  // v2: one run claiming a million items for a batch of two
  assert.equal(screenResults(encodeCbor({ v: 2, batch: 'mine', r: [0, 1, 1_000_000, 0], why: [] }), items, 2).refuse, 'too_many')
  assert.equal(screenResults(encodeCbor({ v: 2, batch: 'mine', r: [0, 1, 'x', 0], why: [] }), items, 2).refuse, 'unreadable')
  const long: ItemResult[] = Array.from({ length: 2 }, (_, i) => [0, i, AckCode.Rejected, 'x'.repeat(resultsBoundBytes(2))])
  assert.equal(screenResults(encodeResultsMessage(1, 'mine', { results: long }), items, 2).refuse, 'oversized')
  // no batch id up front: decoded whole only when no larger than an answer waited for could be
  const late = encodeCbor({ v: 1, results: ok, batch: 'mine' })
  assert.deepEqual(screenResults(late, items, 2), { refuse: null, batch: null })
  assert.equal(screenResults(encodeCbor({ v: 1, results: long, batch: 'mine' }), items, 2).refuse, 'oversized')
})

test('a refused PUBACK is a refusal by its reason code, labelled in the metrics as an HTTP answer of the same meaning', () => {
  assert.deepEqual(pubackRefusal(0x87), { reason: Refusal.Auth, label: '403' }, 'not authorized pauses flushing, never dead-letters')
  assert.deepEqual(pubackRefusal(0x95), { reason: Refusal.TooLarge, label: '413' }, 'packet too large splits')
  assert.deepEqual(pubackRefusal(0x90), { reason: Refusal.Unreadable, label: '400' }, 'topic name invalid bisects')
  assert.deepEqual(pubackRefusal(0x99), { reason: Refusal.Unreadable, label: '400' })
  assert.deepEqual(pubackRefusal(0x97), { reason: Refusal.Busy, label: '429' }, 'quota exceeded backs off')
  assert.deepEqual(pubackRefusal(0x96), { reason: Refusal.Busy, label: '429' })
  assert.deepEqual(pubackRefusal(0x89), { reason: Refusal.Busy, label: '503' })
  assert.deepEqual(pubackRefusal(0xa2), { reason: Refusal.Busy, label: '503' }, 'a code not listed keeps the batch and backs off')
})
