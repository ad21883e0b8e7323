/**
 * Wire interop: the batch and response bytes read by an independent decoder, Python's
 * cbor2 (Debian python3-cbor2), plus a tiny byte-level walker in the same script that
 * reports each value's CBOR major type, so "ts/rx are uint64 ints, not floats" and "no tags"
 * are checked on the bytes, not on a decoder's interpretation.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { test } from 'node:test'
import { AckCode, encodeBatch, encodeResponse, type BatchItem } from '../../protocol/index.ts'
import { tempDir } from '../helpers/index.ts'
import { PYTHON as PY, needTools } from '../helpers/tools.ts'

const SCRIPT = String.raw`
import sys, json, struct, cbor2

def walk(b, i):
    """Returns (shape, next_index); shape mirrors the value with major types at the leaves."""
    ib = b[i]; i += 1
    major, ai = ib >> 5, ib & 31
    if major == 6:
        raise SystemExit('tag found at byte %d' % (i - 1))
    if ai == 31:
        raise SystemExit('indefinite length at byte %d' % (i - 1))
    if ai < 24: arg = ai
    elif ai <= 27:
        n = 1 << (ai - 24); arg = int.from_bytes(b[i:i + n], 'big'); i += n
    else: raise SystemExit('reserved additional info at byte %d' % (i - 1))
    if major in (0, 1): return ('int%d' % (1 << (ai - 24) if ai >= 24 else 0), major), i
    if major in (2, 3): return ('bytes' if major == 2 else 'text', major), i + arg
    if major == 4:
        out = []
        for _ in range(arg):
            v, i = walk(b, i); out.append(v)
        return out, i
    if major == 5:
        out = {}
        for _ in range(arg):
            k, i2 = walk(b, i); key = cbor2.loads(bytes(b[i:i2])); v, i = walk(b, i2); out[str(key)] = v
        return out, i
    return ('float' if ai >= 25 else 'simple', 7), i

data = open(sys.argv[1], 'rb').read()
shape, end = walk(data, 0)
assert end == len(data), 'trailing bytes'
value = cbor2.loads(data)
def plain(v):
    if isinstance(v, dict): return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list): return [plain(x) for x in v]
    if isinstance(v, float): return {'float': v}
    return v
print(json.dumps({'value': plain(value), 'shape': shape}))
`

type Leaf = [kind: string, major: number]

function pyDecode (file: string, script: string): { value: Record<string, unknown>, shape: Record<string, unknown> } {
  const r = spawnSync(PY, [script, file], { encoding: 'utf8' })
  assert.equal(r.status, 0, `python failed: ${r.stderr}`)
  return JSON.parse(r.stdout) as { value: Record<string, unknown>, shape: Record<string, unknown> }
}

test('interop: a batch body is standard CBOR as documented, read by Python cbor2', async (t) => {
  needTools('cbor2')
  const dir = await tempDir(t, 'ingest-interop-')
  const script = join(dir, 'walk.py')
  await writeFile(script, SCRIPT)
  const big = 2 ** 53 - 1
  const items: BatchItem[] = [
    [0, 1, 'dev-a', 7, 3, 1_790_000_000_123, 1_790_000_000_456, { temp: 21.5, ok: true, label: 'x', n: -4 }],
    [5, big, 'dev.b', null, 'boot-text', null, 1_790_000_001_000, { v: 0 }]
  ]
  const body = encodeBatch({ gateway: 'gw1', epoch: 'ep-1', batch: 'b-9', floors: [[0, 1], [5, big]], evicted: [[0, 0, 0]], items })
  const file = join(dir, 'batch.cbor')
  await writeFile(file, body)
  const { value, shape } = pyDecode(file, script)
  assert.deepEqual(Object.keys(value).sort(), ['batch', 'epoch', 'evicted', 'floors', 'gateway', 'items', 'v'])
  assert.equal(value.v, 1)
  assert.equal(value.gateway, 'gw1')
  assert.equal(value.epoch, 'ep-1')
  assert.equal(value.batch, 'b-9')
  assert.deepEqual(value.floors, [[0, 1], [5, big]])
  assert.deepEqual(value.evicted, [[0, 0, 0]])
  const pyItems = value.items as unknown[][]
  assert.equal(pyItems.length, 2)
  for (const it of pyItems) assert.equal(it.length, 8, 'items are 8-element arrays')
  assert.deepEqual(pyItems[0], [0, 1, 'dev-a', 7, 3, 1_790_000_000_123, 1_790_000_000_456, { temp: { float: 21.5 }, ok: true, label: 'x', n: -4 }])
  assert.deepEqual(pyItems[1], [5, big, 'dev.b', null, 'boot-text', null, 1_790_000_001_000, { v: 0 }])
  // On the bytes: ts and rx (and s above 2^32) are CBOR integers (major 0), 8-byte wide here.
  const shapes = shape.items as Leaf[][]
  assert.deepEqual(shapes[0]![5], ['int8', 0], 'ts is uint64')
  assert.deepEqual(shapes[0]![6], ['int8', 0], 'rx is uint64')
  assert.deepEqual(shapes[1]![1], ['int8', 0], 's above 2^32 is uint64')
  assert.deepEqual(shapes[1]![6], ['int8', 0])
  assert.equal(shapes[0]![2]![1], 3, 'device id is text')
})

test('interop: a response is standard CBOR { v, batch, results }, read by Python cbor2', async (t) => {
  needTools('cbor2')
  const dir = await tempDir(t, 'ingest-interop-')
  const script = join(dir, 'walk.py')
  await writeFile(script, SCRIPT)
  const body = encodeResponse({ batch: 'b-9', results: [[0, 1, AckCode.Stored], [0, 2 ** 40, AckCode.Duplicate], [3, 4, AckCode.Rejected, 'device: bad']] })
  const file = join(dir, 'response.cbor')
  await writeFile(file, body)
  const { value, shape } = pyDecode(file, script)
  assert.deepEqual(value, { v: 1, batch: 'b-9', results: [[0, 1, 0], [0, 2 ** 40, 1], [3, 4, 3, 'device: bad']] })
  assert.deepEqual((shape.results as Leaf[][])[1]![1], ['int8', 0], 'large s is uint64, not float')
})
