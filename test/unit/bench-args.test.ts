/**
 * bench/lib/args.ts had its own flag parser beside common/config.ts. It now goes
 * through the product parser; these pin what the bench scripts rely on.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { bool, num, parseFlags, str, type FlagSpec } from '../../bench/lib/args.ts'
import { ConfigError } from '../../protocol/index.ts'

const SPEC: FlagSpec = {
  rate: { type: 'number', default: 5, doc: 'r' },
  'window-s': { type: 'number', doc: 'w' },
  write: { type: 'bool', default: true, doc: 'x' },
  name: { type: 'string', doc: 'n' }
}

test('bench flags: defaults, both value forms, --no-flag and --help', () => {
  const f = parseFlags(['--rate', '7', '--window-s=2.5', '--no-write', '--name', 'a'], SPEC)
  assert.equal(num(f, 'rate'), 7)
  assert.equal(num(f, 'window-s'), 2.5)
  assert.equal(bool(f, 'write'), false)
  assert.equal(str(f, 'name'), 'a')
  const d = parseFlags(['--help'], SPEC)
  assert.equal(d.get('help'), true)
  assert.equal(num(d, 'rate'), 5)
  assert.equal(bool(d, 'write'), true)
  assert.equal(d.has('window-s'), false, 'no default: absent')
  assert.throws(() => num(d, 'window-s'), /--window-s is required/)
})

test('bench flag errors come from the product parser and name the flag', () => {
  for (const [argv, re] of [[['--bogus'], /unknown flag --bogus/], [['--rate', 'x'], /rate: must be a number/], [['--rate'], /--rate needs a value/], [['stray'], /unexpected argument/]] as const) {
    assert.throws(() => parseFlags(argv, SPEC), (err: unknown) => err instanceof ConfigError && re.test(err.message), argv.join(' '))
  }
  assert.throws(() => parseFlags([], { windowS: { type: 'number', doc: 'd' } }), /must be kebab-case/)
})
