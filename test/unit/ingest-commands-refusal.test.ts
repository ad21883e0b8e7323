/**
 * The command state machine (ingest/commands/index.ts) refuses without naming a transport:
 * it threw HttpErrors (status numbers and Retry-After headers decided inside the state
 * machine), so the MQTT side could not reuse its refusals and the HTTP answers were spread
 * over it. Now it throws a `CommandRefusal` (ingest/refusal.ts) and the HTTP front maps
 * each kind to a status with one table (commands/http.ts `COMMAND_REFUSAL_STATUS`). This
 * checks that the table covers every kind, that every refusal the source makes is answered
 * with the status docs/commands.md gives its code, and that the state machine reaches no
 * HTTP module, however indirectly.
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join, posix } from 'node:path'
import { test } from 'node:test'
import { COMMAND_REFUSAL_STATUS, httpErrorOfCommand } from '../../ingest/commands/http.ts'
import { COMMAND_REFUSAL_KINDS, CommandRefusal, type CommandRefusalKind } from '../../ingest/refusal.ts'
import { ROOT } from '../helpers/index.ts'

/** What is wrong with a kind -> status table; empty when it gives every kind a 4xx status and names no other. */
function tableProblems (table: Readonly<Record<string, number>>): string[] {
  const problems: string[] = []
  for (const kind of COMMAND_REFUSAL_KINDS) {
    const status = table[kind]
    if (status === undefined) problems.push(`${kind}: no status`)
    else if (!Number.isInteger(status) || status < 400 || status > 499) problems.push(`${kind}: ${status} is not a 4xx status`)
  }
  for (const kind of Object.keys(table)) if (!(COMMAND_REFUSAL_KINDS as readonly string[]).includes(kind)) problems.push(`${kind}: not a kind`)
  return problems
}

test('COMMAND_REFUSAL_STATUS gives every kind a 4xx status, and nothing else (the check can fail)', () => {
  assert.deepEqual(tableProblems(COMMAND_REFUSAL_STATUS), [])
  const { conflict: _, ...withoutConflict } = COMMAND_REFUSAL_STATUS
  assert.deepEqual(tableProblems(withoutConflict), ['conflict: no status'])
  assert.deepEqual(tableProblems({ ...COMMAND_REFUSAL_STATUS, invalid: 200, gone: 410 }), ['invalid: 200 is not a 4xx status', 'gone: not a kind'])
})

/** The status of each `error` code of the command API (docs/commands.md), as answered before the state machine lost its HttpErrors. */
const DOCUMENTED: Record<string, number> = {
  invalid_command: 400,
  invalid_reports: 400,
  forbidden: 403,
  unknown_device: 404,
  not_found: 404,
  device_offline: 409,
  not_cancellable: 409,
  args_too_large: 413,
  idempotency_key_reused: 422,
  too_many_pending: 429,
  rate_limited: 429
}

/** Every `new CommandRefusal('kind', 'code'` of a source file. */
function refusalsIn (file: string): Array<{ kind: string, code: string }> {
  return [...readFileSync(join(ROOT, file), 'utf8').matchAll(/new CommandRefusal\(\s*'([^']+)',\s*'([^']+)'/g)].map((m) => ({ kind: m[1]!, code: m[2]! }))
}

test('every refusal the command code makes is answered with the status its code had', () => {
  const found = ['ingest/commands/index.ts', 'ingest/commands/http.ts', 'ingest/commands/mqtt.ts'].flatMap((f) => refusalsIn(f).map((r) => ({ ...r, file: f })))
  assert.ok(found.length >= 12, `found only ${found.length} refusals: is the search broken?`)
  const problems: string[] = []
  for (const { kind, code, file } of found) {
    const want = DOCUMENTED[code]
    if (want === undefined) problems.push(`${file}: ${code} is not a documented command error`)
    else if (COMMAND_REFUSAL_STATUS[kind as CommandRefusalKind] !== want) problems.push(`${file}: ${code} (kind ${kind}) would be ${COMMAND_REFUSAL_STATUS[kind as CommandRefusalKind]}, was ${want}`)
  }
  assert.deepEqual(problems, [])
  // every code the state machine refuses a caller with is among them
  const codes = new Set(refusalsIn('ingest/commands/index.ts').map((r) => r.code))
  for (const code of ['invalid_command', 'unknown_device', 'not_found', 'device_offline', 'not_cancellable', 'args_too_large', 'idempotency_key_reused', 'too_many_pending', 'rate_limited']) assert.ok(codes.has(code), `commands/index.ts makes no ${code} refusal`)
})

test('httpErrorOfCommand: status of the table, code, message, field; Retry-After in whole seconds, rounded up', () => {
  for (const kind of COMMAND_REFUSAL_KINDS) {
    const e = httpErrorOfCommand(new CommandRefusal(kind, `code_${kind}`, `refused ${kind}`, { field: 'f' }))
    assert.deepEqual([e.status, e.errorCode, e.message, e.field, e.headers, e.closeConnection], [COMMAND_REFUSAL_STATUS[kind], `code_${kind}`, `refused ${kind}`, 'f', {}, false], kind)
  }
  const rate = httpErrorOfCommand(new CommandRefusal('rate-limited', 'rate_limited', 'x', { field: 'rate', retryAfterMs: 1001 }))
  assert.deepEqual([rate.status, rate.headers], [429, { 'retry-after': '2' }])
  assert.equal(rate.retryable, new CommandRefusal('rate-limited', 'rate_limited', 'x').retryable)
  assert.equal(new CommandRefusal('invalid', 'invalid_command', 'x').retryable, false)
})

const HTTP_MODULES = new Set(['ingest/errors.ts', 'ingest/server.ts', 'ingest/body.ts', 'ingest/decode.ts', 'ingest/tls.ts', 'ingest/commands/http.ts', 'ingest/commands/auth.ts', 'ingest/read-auth.ts'])
const HTTP_PACKAGES = /^(node:)?(http|https|http2)$/
const IMPORT = /^\s*(?:import|export)\s(?:[^'"]*?\sfrom\s*)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/gm

/** What `file` reaches through its imports (type imports too) that is HTTP: a module of the HTTP front, an HTTP package, the name HttpError. */
function httpReached (file: string): string[] {
  const seen = new Set<string>()
  const problems: string[] = []
  const visit = (f: string, via: string): void => {
    if (seen.has(f)) return
    seen.add(f)
    if (f !== file && HTTP_MODULES.has(f)) { problems.push(via); return }
    const text = readFileSync(join(ROOT, f), 'utf8')
    // protocol/errors.ts declares HttpError for the fronts; only a file that uses the name counts
    if (f !== 'protocol/errors.ts' && /\bHttpError\b/.test(text)) problems.push(`${via}: names HttpError`)
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2]!
      if (HTTP_PACKAGES.test(spec)) problems.push(`${via} imports ${spec}`)
      if (!spec.startsWith('.')) continue
      const target = posix.normalize(posix.join(posix.dirname(f), spec))
      if (existsSync(join(ROOT, target))) visit(target, `${via} -> ${target}`)
    }
  }
  visit(file, file)
  return problems
}

test('the command state machine imports nothing HTTP, directly or through what it imports', () => {
  assert.deepEqual(httpReached('ingest/commands/index.ts'), [])
  // the check can fail: the HTTP routes reach HTTP modules
  const routes = httpReached('ingest/commands/http.ts')
  assert.ok(routes.includes('ingest/commands/http.ts imports node:http'), routes.join('; '))
  assert.ok(routes.includes('ingest/commands/http.ts -> ingest/errors.ts'), routes.join('; '))
  assert.ok(routes.includes('ingest/commands/http.ts: names HttpError'), routes.join('; '))
})
