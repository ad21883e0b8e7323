/**
 * `gateway --help` was 219 lines of flags in schema order, `--upstream` and `--token` after
 * 75 lines of limits, and several flags printed `(default )`. Now: the flags a new user needs
 * first, then the sections of docs/configuration.md in its order, every flag exactly once,
 * and no empty default.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { kebab } from '../../common/index.ts'
import { gatewaySchema } from '../../gateway/config.ts'
import { gatewayUsage } from '../../gateway/help.ts'
import { ROOT } from '../helpers/index.ts'

const help = gatewayUsage()
const lines = help.split('\n')

test('--help: the flags a new user needs come first', () => {
  const at = (flag: string): number => lines.findIndex((l) => l.startsWith(`  --${flag} `))
  for (const flag of ['upstream', 'token', 'data-dir', 'mqtt-port', 'auth']) {
    assert.ok(at(flag) >= 0 && at(flag) < 30, `--${flag} on line ${at(flag)}`)
  }
  assert.match(lines.find((l) => l.endsWith(':')) ?? '', /^start here/)
})

test('--help: the sections of docs/configuration.md, in its order, each flag once', () => {
  const doc = readFileSync(join(ROOT, 'docs', 'configuration.md'), 'utf8')
  const gatewayPart = doc.slice(doc.indexOf('## gateway'))
  const docSections = /^Sections: (.*)\.$/m.exec(gatewayPart)![1]!.split(', ').map((s) => s.replace(/ \(\d+\)$/, ''))
  const helpSections = lines.filter((l) => /^[a-z][a-z :]*:$/.test(l)).map((l) => l.slice(0, -1))
  assert.deepEqual(helpSections.slice(0, docSections.length), docSections) // after "start here (...)"
  for (const k of Object.keys(gatewaySchema)) {
    const n = lines.filter((l) => l.startsWith(`  --${kebab(k)} `)).length
    assert.equal(n, 1, `--${kebab(k)} printed ${n} times`)
  }
})

test('--help: no flag prints an empty default', () => {
  assert.doesNotMatch(help, /\(default \)/)
  assert.match(help, /^ {2}--upstream <list>$/m)
  assert.match(help, /^ {2}--mqtt-port <int> \(default 1883\)$/m)
})
