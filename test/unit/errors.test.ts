/**
 * Two HTTP error classes (ingest HttpError, admin HttpProblem) and five classes
 * outside the hierarchy, with no codes and no list. Now one hierarchy under EdgeError, one
 * code a class, one table (docs/errors.md). This test finds every error class the source
 * declares (protocol/, common/, gateway/, ingest/, device-sim/, bench/, scripts/) and fails
 * naming each one that is outside the hierarchy, has no code of its own, shares a code, is
 * missing from the table or listed there with another code, or drops its `cause`.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ROOT } from '../helpers/index.ts'
import { ConfigError, DecodeError, EdgeError, HttpError, StoreError, UpstreamError, ValidationError } from '../../protocol/errors.ts'
import { ListenError } from '../../gateway/listen.ts'
import { GateFullError } from '../../gateway/broker/login-guard.ts'
import { AedesShapeError } from '../../gateway/broker/aedes-internals.ts'
import { PasswdError } from '../../gateway/cli/passwd.ts'
import { AdminUnreachableError } from '../../gateway/cli/dlq.ts'
import { StoreOpenError } from '../../gateway/store/open-error.ts'
import { StoreLockedError } from '../../gateway/store/dlq-reader.ts'
import { AuditHttpError } from '../../device-sim/audit-http.ts'
import { PostgresMissingError } from '../../scripts/throwaway-postgres.ts'
import { MosquittoMissingError } from '../../scripts/throwaway-mosquitto.ts'
import { BatchRefusal, CommandRefusal } from '../../ingest/refusal.ts'

const SOURCE_ROOTS = ['protocol', 'common', 'gateway', 'ingest', 'device-sim', 'bench', 'scripts']
const SKIP = new Set(['node_modules', 'results'])
const CODE_RE = /^EDGE_ERR(_[A-Z0-9]+)*$/

type ErrorClass = (abstract new (...args: never[]) => Error) & { code?: unknown }
type Declared = { file: string, name: string, base: string }

function * tsFiles (dir: string): Generator<string> {
  for (const name of readdirSync(dir).sort()) {
    if (SKIP.has(name)) continue
    const p = join(dir, name)
    if (statSync(p).isDirectory()) yield * tsFiles(p)
    else if (name.endsWith('.ts')) yield p
  }
}

/** Every `class X extends Y` of the source, by file. */
function declarations (): Declared[] {
  const out: Declared[] = []
  for (const root of SOURCE_ROOTS) {
    if (!existsSync(join(ROOT, root))) continue
    for (const file of tsFiles(join(ROOT, root))) {
      for (const m of readFileSync(file, 'utf8').matchAll(/\bclass\s+(\w+)\s+extends\s+([\w.]+)/g)) out.push({ file: relative(ROOT, file), name: m[1]!, base: m[2]! })
    }
  }
  return out
}

const isErrorClass = (v: unknown): v is ErrorClass => typeof v === 'function' && (v === Error || v.prototype instanceof Error)

/**
 * The error classes the source declares, each once (ingest/errors.ts re-exports HttpError,
 *), with the problems found on the way: a class extending an
 * error that its module does not export cannot be listed, so it counts as a problem.
 */
async function findErrorClasses (): Promise<{ classes: Map<ErrorClass, string>, problems: string[] }> {
  const classes = new Map<ErrorClass, string>()
  const problems: string[] = []
  const byFile = new Map<string, Declared[]>()
  for (const d of declarations()) byFile.set(d.file, [...byFile.get(d.file) ?? [], d])
  for (const [file, decls] of byFile) {
    const mod = await import(pathToFileURL(join(ROOT, file)).href) as Record<string, unknown>
    for (const d of decls) {
      const v = mod[d.name]
      if (isErrorClass(v)) classes.set(v, file)
      else if (v === undefined && /Error$/.test(d.base)) problems.push(`${d.name} (${file}) extends ${d.base} and is not exported: export it and list it in docs/errors.md`)
    }
  }
  return { classes, problems }
}

let found: ReturnType<typeof findErrorClasses> | undefined
const sourceErrorClasses = (): ReturnType<typeof findErrorClasses> => (found ??= findErrorClasses())

/** The class table of docs/errors.md: class name -> code. */
export function docTable (markdown: string): Map<string, string> {
  const rows = new Map<string, string>()
  for (const line of markdown.split('\n')) {
    const m = /^\|\s*`(\w+)`\s*\|\s*`([A-Z0-9_]+)`\s*\|/.exec(line)
    if (m) rows.set(m[1]!, m[2]!)
  }
  return rows
}

/** What is wrong between the classes and the table; empty when they agree. */
export function tableProblems (classes: ReadonlyArray<{ name: string, code: unknown }>, table: ReadonlyMap<string, string>): string[] {
  const problems: string[] = []
  const seen = new Map<string, string>()
  for (const c of classes) {
    const code = String(c.code)
    if (!CODE_RE.test(code)) problems.push(`${c.name}: code ${JSON.stringify(c.code)} is not EDGE_ERR_*`)
    const other = seen.get(code)
    if (other !== undefined) problems.push(`${c.name} and ${other} share the code ${code}`)
    seen.set(code, c.name)
    const row = table.get(c.name)
    if (row === undefined) problems.push(`${c.name} (${code}) is not in the table of docs/errors.md`)
    else if (row !== code) problems.push(`${c.name}: docs/errors.md says ${row}, the class says ${code}`)
  }
  const names = new Set(classes.map((c) => c.name))
  for (const name of table.keys()) if (!names.has(name)) problems.push(`docs/errors.md lists ${name}, which no source file declares`)
  return problems
}

const table = (): Map<string, string> => docTable(readFileSync(join(ROOT, 'docs/errors.md'), 'utf8'))

test('every error class of the source extends EdgeError and declares its own code', async () => {
  const { classes, problems: found } = await sourceErrorClasses()
  const problems = [...found]
  assert.ok(classes.size >= 14, `found only ${classes.size} error classes: is the search broken?`)
  for (const [c, file] of classes) {
    if (c !== EdgeError && !(c.prototype instanceof EdgeError)) problems.push(`${c.name} (${file}) does not extend EdgeError`)
    if (!Object.hasOwn(c, 'code')) problems.push(`${c.name} (${file}) has no static code of its own`)
  }
  assert.deepEqual(problems, [])
})

test('docs/errors.md lists every error class with its code; codes are unique', async () => {
  const { classes } = await sourceErrorClasses()
  const list = [...classes.keys()].map((c) => ({ name: c.name, code: c.code }))
  assert.deepEqual(tableProblems(list, table()), [])
})

test('the table check fails for a class left out, a wrong code and a shared code (it can fail)', async () => {
  const { classes } = await sourceErrorClasses()
  const list = [...classes.keys()].map((c) => ({ name: c.name, code: c.code }))
  const without = table()
  without.delete('PasswdError')
  assert.ok(tableProblems(list, without).includes('PasswdError (EDGE_ERR_PASSWD) is not in the table of docs/errors.md'))
  const wrong = table()
  wrong.set('ListenError', 'EDGE_ERR_BIND')
  assert.ok(tableProblems(list, wrong).includes('ListenError: docs/errors.md says EDGE_ERR_BIND, the class says EDGE_ERR_LISTEN'))
  const shared = list.map((c) => c.name === 'StoreOpenError' ? { ...c, code: StoreError.code } : c)
  assert.ok(tableProblems(shared, table()).includes('StoreOpenError and StoreError share the code EDGE_ERR_STORE'))
})

/** One instance of each class, made with `cause` where the class takes one. */
const MAKE: Record<string, (cause: Error) => EdgeError> = {
  ValidationError: (cause) => new ValidationError('values.t', 'must be finite', { cause }),
  DecodeError: (cause) => new DecodeError('bad CBOR', { cause }),
  ConfigError: (cause) => new ConfigError('mqttPort', 'must be in 0..65535', { cause }),
  StoreError: (cause) => new StoreError('write failed', { cause }),
  UpstreamError: (cause) => new UpstreamError('no answer', { status: 0, cause }),
  HttpError: (cause) => new HttpError(400, 'bad_json', 'body is not JSON', { cause }),
  BatchRefusal: (cause) => new BatchRefusal('unreadable', 'malformed_cbor', 'not CBOR', { field: 'body', cause }),
  CommandRefusal: (cause) => new CommandRefusal('unknown', 'unknown_device', 'no gateway has reported dev1', { field: 'device', cause }),
  ListenError: (cause) => new ListenError('--mqtt-port', '127.0.0.1', 1883, Object.assign(cause, { code: 'EADDRINUSE' })),
  GateFullError: (cause) => new GateFullError(5, { cause }),
  AedesShapeError: (cause) => new AedesShapeError('aedes.mq', { cause }),
  PasswdError: (cause) => new PasswdError('cannot read f', 1, { cause }),
  AdminUnreachableError: (cause) => new AdminUnreachableError('http://127.0.0.1:8082', cause),
  StoreOpenError: (cause) => new StoreOpenError('/d', 'corrupt', 'corrupt store', cause),
  StoreLockedError: (cause) => new StoreLockedError('/d', { cause }),
  AuditHttpError: (cause) => new AuditHttpError('http://i/', 0, 'GET failed', { cause }),
  PostgresMissingError: (cause) => new PostgresMissingError('no binaries', { cause }),
  MosquittoMissingError: (cause) => new MosquittoMissingError('no mosquitto', { cause })
}

test('every class keeps its cause, its name and its code on the instance', async () => {
  const { classes } = await sourceErrorClasses()
  for (const c of classes.keys()) {
    if (c === EdgeError) continue
    const make = MAKE[c.name]
    assert.ok(make, `${c.name}: add a line to MAKE in this test`)
    const cause = new Error('root')
    const err = make(cause)
    assert.ok(err instanceof c && err instanceof EdgeError && err instanceof Error, c.name)
    assert.equal(err.cause, cause, `${c.name} dropped its cause`)
    assert.equal(err.name, c.name)
    assert.equal(err.code, c.code, `${c.name}: instance code`)
    assert.equal(typeof err.retryable, 'boolean', `${c.name}: retryable`)
  }
})

test('retryable: transient and permanent failures as docs/errors.md says', () => {
  assert.equal(new HttpError(400, 'invalid_batch', 'x').retryable, false)
  assert.equal(new HttpError(429, 'too_many_failures', 'x').retryable, true)
  assert.equal(new HttpError(503, 'store_unavailable', 'x').retryable, true)
  assert.equal(new ListenError('--admin-port', '::1', 80, Object.assign(new Error('x'), { code: 'EACCES' })).retryable, false)
  assert.equal(new ListenError('--admin-port', '::1', 80, Object.assign(new Error('x'), { code: 'EADDRINUSE' })).retryable, true)
  assert.equal(new StoreOpenError('/d', 'corrupt', 'x', null).retryable, false)
  assert.equal(new StoreLockedError('/d').retryable, true)
  assert.equal(new AuditHttpError('u', 0, 'x').retryable, true)
  assert.equal(new AuditHttpError('u', 200, 'x').retryable, false)
  assert.equal(new GateFullError(1).retryable, true)
})

test('HttpError keeps the body code apart from the class code; ListenError keeps the errno; StoreLockedError is a StoreError', () => {
  const e = new HttpError(413, 'too_large', 'body over 65536 bytes', { field: 'body', headers: { 'retry-after': '1' } })
  assert.equal(e.code, 'EDGE_ERR_HTTP')
  assert.equal(e.errorCode, 'too_large')
  assert.deepEqual([e.status, e.field, e.headers, e.closeConnection], [413, 'body', { 'retry-after': '1' }, false])
  const l = new ListenError('--mqtt-port', '127.0.0.1', 1883, Object.assign(new Error('x'), { code: 'EADDRINUSE' }))
  assert.equal(l.errnoCode, 'EADDRINUSE')
  assert.ok(new StoreLockedError('/d') instanceof StoreError)
})
