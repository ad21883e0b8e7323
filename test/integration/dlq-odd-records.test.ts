/**
 * Every dead-letter record renders, whatever its bytes decode to. A
 * dead-lettered `{"values":{"a":tag2(h'01')}}` decoded to a BigInt and JSON.stringify threw
 * in `/dlq`, `gateway dlq show` and `gateway dlq export` (the export stream aborted); a
 * damaged record (a reason that is a map, a time out of range) broke every list.
 *
 * Records are written straight into a gateway's store (as an older version or a damaged
 * disk could leave them), then read through the admin API of the running gateway and,
 * once it is stopped, with the CLI on its data dir.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { encodeCbor } from '../../protocol/index.ts'
import { K } from '../../gateway/store/keys.ts'
import { startGateway } from '../helpers/gateway.ts'
import { runDlq } from '../helpers/cli.ts'
import { tempDir } from '../helpers/index.ts'

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const AT = 1_790_000_000_000
const record = (fields: Record<string, unknown>): Buffer => encodeCbor({ kind: 'payload', reason: 'values.a: must be a number, boolean or text', at: AT, device: 'odd-1', topic: 'devices/odd-1/readings', ...fields })

/** id -> [stored record bytes, what its view must show] */
const RECORDS: [number, Buffer, (v: Record<string, unknown>) => void][] = [
  // the 9 bytes: {"values":{"a":tag2(h'01')}}
  [1, record({ raw: hex('a1 66 76616c756573 a1 61 61 c2 41 01') }), (v) => assert.deepEqual(v.reading, { values: { a: { $bigint: '1' } } })],
  [2, record({ raw: hex('a1 66 76616c756573 a1 61 61 c3 48 ffffffffffffffff') }), (v) => assert.deepEqual(v.reading, { values: { a: { $bigint: '-18446744073709551616' } } })],
  [3, record({ raw: hex('a1 66 76616c756573 a1 61 61 42 0102') }), (v) => assert.deepEqual(v.reading, { values: { a: { $base64: 'AQI=' } } })],
  // a Map with non-text keys (tag 259): 259({1: 2, h'00': 3})
  [4, record({ raw: hex('d9 0103 a2 01 02 41 00 03') }), (v) => assert.deepEqual(v.reading, { $map: [[1, 2], [{ $base64: 'AA==' }, 3]] })],
  [5, record({ raw: hex('a1 66 76616c756573 a2 61 61 f7 61 62 f9 7e00') }), (v) => assert.deepEqual(v.reading, { values: { a: { $undefined: true }, b: { $number: 'NaN' } } })],
  [6, record({ raw: hex('ff ff') }), (v) => { assert.equal(v.reading, null); assert.match(String(v.readingError), /unexpected CBOR break at byte 0/) }],
  // a bignum too long to decode for display, and a tag no version accepts
  [7, record({ raw: Buffer.concat([hex('a1 66 76616c756573 a1 61 61 c2 59 4000'), Buffer.alloc(16384, 0xff)]) }), (v) => { assert.equal(v.reading, null); assert.match(String(v.readingError), /bignum \(tag at byte 11\) must be a byte string of at most 64 bytes/) }],
  [8, record({ raw: hex('d8 1b 82 66 526567457870 62 612b') }), (v) => { assert.equal(v.reading, null); assert.match(String(v.readingError), /CBOR tag 27 at byte 0 is not accepted/) }],
  // an item (v1 wire array) whose values hold a tag-1 date and a set
  [9, record({ kind: 'item', device: undefined, topic: undefined, raw: hex('88 00 01 63 646576 f6 f6 f6 05 a2 61 61 c1 1a 6a000000 61 62 d9 0102 82 01 02') }),
    (v) => assert.deepEqual(v.reading, { p: 0, s: 1, device: 'dev', seq: null, boot: null, ts: null, rx: 5, values: { a: { $date: '2026-05-10T03:48:16.000Z' }, b: { $set: [1, 2] } } })],
  // damaged records: a reason that is a map with hostile keys, a time out of range
  [10, record({ reason: { toString: 1, valueOf: 1 }, at: 1e300, kind: 7, raw: hex('a1 66 76616c756573 a1 61 61 01') }), (v) => {
    assert.equal(v.reason, '(object)'); assert.equal(v.kind, '7'); assert.equal(v.at, 'invalid time 1e+300'); assert.deepEqual(v.reading, { values: { a: 1 } })
  }],
  [11, hex('c2 41 01'), (v) => { assert.equal(v.kind, 'unreadable'); assert.match(String(v.reason), /record unreadable: CBOR tag 2 at byte 0/) }],
  [12, Buffer.from('not cbor at all'), (v) => assert.equal(v.kind, 'unreadable')],
  // __proto__ and toJSON as value names are data, not behaviour
  [13, record({ raw: Buffer.from('{"values":{"__proto__":{"x":1},"toJSON":2}}') }), (v) => assert.deepEqual(JSON.parse(JSON.stringify(v.reading)), JSON.parse('{"values":{"__proto__":{"x":1},"toJSON":2}}'))],
  [14, record({ reason: 'fine', raw: hex('a1 66 76616c756573 a1 61 61 01') }), (v) => assert.deepEqual(v.reading, { values: { a: 1 } })]
]

function checkAll (views: Record<string, unknown>[], what: string): void {
  assert.deepEqual(views.map((v) => v.id), RECORDS.map(([id]) => id), `${what}: every record, in order`)
  for (const [i, [id, , check]] of RECORDS.entries()) {
    try { check(views[i]!) } catch (err) { throw new Error(`${what}: record ${id}: ${(err as Error).message}`, { cause: err }) }
  }
}

test('dlq: records holding BigInts, bytes, Maps, undefined, tags, invalid CBOR or damaged fields all render (admin API, CLI list, show, export)', { timeout: 90_000 }, async (t) => {
  const dataDir = await tempDir(t, 'dlq-odd-')
  const gw = await startGateway(t, { dataDir })
  for (const [id, bytes] of RECORDS) await gw.store.db.put(K.dlq(id), bytes)
  const base = `http://127.0.0.1:${gw.adminPort}`

  const list = await fetch(base + '/dlq?limit=1000')
  assert.equal(list.status, 200, await list.clone().text())
  checkAll((await list.json() as { items: Record<string, unknown>[] }).items, 'GET /dlq')
  for (const [id, , check] of RECORDS) {
    const r = await fetch(`${base}/dlq/${id}`)
    assert.equal(r.status, 200, `GET /dlq/${id}: ${await r.clone().text()}`)
    const v = await r.json() as Record<string, unknown>
    check(v)
    assert.equal(typeof v.raw, 'string', 'the raw bytes are always there')
  }
  const exp = await fetch(base + '/dlq/export')
  assert.equal(exp.status, 200)
  checkAll((await exp.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>), 'GET /dlq/export')
  const sum = await fetch(base + '/dlq/summary')
  assert.equal(sum.status, 200)
  await gw.close()

  // the CLI on the stopped gateway's data dir
  const listed = await runDlq(t, ['list', '--data-dir', dataDir, '--json'])
  assert.equal(listed.code, 0, listed.stderr)
  checkAll(listed.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>), 'dlq list --json')
  const table = await runDlq(t, ['list', '--data-dir', dataDir])
  assert.equal(table.code, 0, table.stderr)
  assert.equal(table.stdout.trim().split('\n').length, RECORDS.length)
  for (const id of [1, 7, 10]) {
    const shown = await runDlq(t, ['show', String(id), '--data-dir', dataDir])
    assert.equal(shown.code, 0, `show ${id}: ${shown.stderr}`)
    RECORDS.find(([i]) => i === id)![2](JSON.parse(shown.stdout) as Record<string, unknown>)
  }
  const out = join(dataDir, '..', 'dead.jsonl')
  const exported = await runDlq(t, ['export', '--data-dir', dataDir, '--out', out])
  assert.equal(exported.code, 0, exported.stderr)
  assert.match(exported.stderr, new RegExp(`exported ${RECORDS.length} records`))
  checkAll((await readFile(out, 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>), 'dlq export')
})
