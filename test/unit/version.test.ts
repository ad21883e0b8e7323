/** Every CLI prints protocol/version.ts's VERSION for `--version`: it must be the release package.json names. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../helpers/index.ts'
import { VERSION } from '../../protocol/version.ts'

test('VERSION is package.json\'s version', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  assert.equal(VERSION, pkg.version)
})
