/**
 * The simulated device's command rules (execute an id at most once, answer a redelivery from
 * flash, expired not executed) and the command audit, on fabricated records: a clean run
 * passes, and each failure it exists for (an execution twice, two final states, a lost
 * command, a result that is not the device's answer, an idempotency key that made two
 * commands) fails it.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { auditCommands } from '../../device-sim/command-audit.ts'
import { CommandDriver, defaultPick, type CommandView } from '../../device-sim/command-driver.ts'
import { CommandFlash, handleCommand, type DeviceCommandRecord } from '../../device-sim/commands.ts'

const NOW = 1_765_000_000_000
const cmd = (id: string, name: string, args: unknown = null, expiresAt = NOW + 60_000): { id: string, name: string, args: unknown, expiresAt: number } => ({ id, name, args, expiresAt })

test('a command id is executed once; a redelivery gets the stored answer and is not executed', () => {
  const f = new CommandFlash('d1')
  const a = handleCommand(f, cmd('c1', 'ping'), NOW)
  assert.equal(a.executed, true)
  assert.deepEqual(a.answer, { id: 'c1', ok: true, result: { pong: true, at: NOW } })
  const b = handleCommand(f, cmd('c1', 'ping'), NOW + 5000)
  assert.equal(b.executed, false)
  assert.equal(b.redelivered, true)
  assert.deepEqual(b.answer, a.answer, 'the stored answer, not a new pong')
  const e = f.get('c1')!
  assert.equal(e.received, 2)
  assert.equal(e.executed, 1)
  assert.equal(e.answersSent, 2)
})

test('set-interval, reboot, fail, unknown names and expired commands', () => {
  const f = new CommandFlash('d1')
  assert.deepEqual(handleCommand(f, cmd('s1', 'set-interval', { seconds: 5 }), NOW).effect, { kind: 'set-interval', seconds: 5 })
  const low = handleCommand(f, cmd('s2', 'set-interval', { seconds: 0.5 }), NOW)
  assert.equal(low.answer.ok, false)
  assert.equal(low.effect, null)
  assert.equal(handleCommand(f, cmd('s3', 'set-interval', {}), NOW).answer.ok, false)
  const r = handleCommand(f, cmd('r1', 'reboot'), NOW)
  assert.equal(r.answer.ok, true)
  assert.deepEqual(r.effect, { kind: 'reboot' })
  assert.equal(handleCommand(f, cmd('r1', 'reboot'), NOW).effect, null, 'a redelivered reboot does not reboot again')
  const x = handleCommand(f, cmd('f1', 'fail'), NOW)
  assert.equal(x.answer.ok, false)
  const u = handleCommand(f, cmd('u1', 'frobnicate'), NOW)
  assert.deepEqual(u.answer, { id: 'u1', ok: false, error: 'unknown command frobnicate' })
  assert.equal(f.get('u1')!.executed, 0)
  const old = handleCommand(f, cmd('e1', 'reboot', null, NOW - 1), NOW)
  assert.deepEqual(old.answer, { id: 'e1', ok: false, error: 'expired' })
  assert.equal(old.executed, false)
  assert.equal(old.effect, null, 'an expired reboot does not reboot')
  assert.equal(f.get('e1')!.executed, 0)
})

/** A device that executed each (id, answer) once. */
function device (id: string, entries: [string, { ok: true, result: unknown } | { ok: false, error: string }, number?][]): DeviceCommandRecord {
  const commands = new Map()
  for (const [cid, ans, executed] of entries) commands.set(cid, { name: 'x', received: 1, executed: executed ?? 1, answersSent: 1, answer: { id: cid, ...ans }, firstAt: NOW })
  return { id, commands, undecodable: 0 }
}
const view = (id: string, device: string, state: CommandView['state'], extra: Partial<CommandView> = {}, finals: string[] = [state]): CommandView => ({
  id, device, state, history: [{ state: 'queued', at: 1 }, { state: 'at-gateway', at: 2 }, ...finals.map((s, i) => ({ state: s, at: 3 + i }))], ...extra
})
const sent = (id: string, device: string): { id: string, device: string, repeated: boolean, repeatId: string | null } => ({ id, device, repeated: false, repeatId: null })

function clean (): { s: ReturnType<typeof sent>[], v: Map<string, CommandView | null>, d: DeviceCommandRecord[] } {
  return {
    s: [sent('c1', 'd1'), sent('c2', 'd1'), sent('c3', 'd2'), sent('c4', 'd2')],
    v: new Map([
      ['c1', view('c1', 'd1', 'completed', { result: { pong: true, at: NOW } })],
      ['c2', view('c2', 'd1', 'rejected', { error: 'failed as asked' })],
      ['c3', view('c3', 'd2', 'expired')],
      ['c4', view('c4', 'd2', 'completed', { result: { at: NOW, pong: true } })]
    ]),
    d: [device('d1', [['c1', { ok: true, result: { pong: true, at: NOW } }], ['c2', { ok: false, error: 'failed as asked' }]]), device('d2', [['c4', { ok: true, result: { pong: true, at: NOW } }]])]
  }
}

test('command audit: a clean run passes (key order of a result does not matter)', () => {
  const { s, v, d } = clean()
  const a = auditCommands(s, v, d)
  assert.equal(a.ok, true, JSON.stringify(a.failures))
  assert.equal(a.counts.completed, 2)
  assert.equal(a.counts.rejected, 1)
  assert.equal(a.counts.expired, 1)
  assert.equal(a.counts.executions, 3)
})

test('command audit fails on an execution twice', () => {
  const { s, v, d } = clean()
  d[0]!.commands.get('c1')!.executed = 2
  const a = auditCommands(s, v, d)
  assert.equal(a.ok, false)
  assert.equal(a.counts.executedTwice, 1)
  assert.equal(a.failures[0]!.id, 'c1')
})

test('command audit fails on two final states in a history', () => {
  const { s, v, d } = clean()
  v.set('c1', view('c1', 'd1', 'completed', { result: { pong: true, at: NOW } }, ['completed', 'expired']))
  const a = auditCommands(s, v, d)
  assert.equal(a.ok, false)
  assert.equal(a.counts.badHistory, 1)
  // and on a final state the history does not record
  v.set('c1', view('c1', 'd1', 'completed', { result: { pong: true, at: NOW } }, []))
  assert.equal(auditCommands(s, v, d).counts.badHistory, 1)
})

test('command audit fails on a lost command: unknown to the ingest, never read, or not final', () => {
  const { s, v, d } = clean()
  v.set('c3', null)
  assert.equal(auditCommands(s, v, d).counts.lost, 1)
  v.delete('c3')
  assert.equal(auditCommands(s, v, d).counts.lost, 1)
  v.set('c3', view('c3', 'd2', 'delivered', {}, []))
  const a = auditCommands(s, v, d)
  assert.equal(a.ok, false)
  assert.equal(a.counts.lost, 1)
  assert.match(a.failures[0]!.detail, /still delivered/)
})

test('command audit fails when the ingest result is not the device answer', () => {
  const { s, v, d } = clean()
  v.set('c1', view('c1', 'd1', 'completed', { result: { pong: true, at: NOW + 1 } }))
  assert.equal(auditCommands(s, v, d).counts.resultMismatch, 1)
  const c = clean()
  c.v.set('c2', view('c2', 'd1', 'rejected', { error: 'something else' }))
  assert.equal(auditCommands(c.s, c.v, c.d).counts.resultMismatch, 1)
  // completed, but no device ever got it: a phantom answer
  const p = clean()
  p.d[1]!.commands.delete('c4')
  assert.equal(auditCommands(p.s, p.v, p.d).counts.resultMismatch, 1)
})

test('command audit fails when a repeated Idempotency-Key named another command', () => {
  const { s, v, d } = clean()
  s[0] = { ...s[0]!, repeated: true, repeatId: 'c1' }
  assert.equal(auditCommands(s, v, d).ok, true)
  s[0] = { ...s[0], repeatId: 'c9' }
  const a = auditCommands(s, v, d)
  assert.equal(a.ok, false)
  assert.equal(a.counts.idempotencyMismatch, 1)
})

test('the driver sends the three kinds with Idempotency-Key and a token, and reconciles deferred ones through the feed', async () => {
  // a fake ingest: every command completes at once; the feed lists them
  const calls: { method: string, url: string, headers: Record<string, string> }[] = []
  const store = new Map<string, CommandView>()
  const byKey = new Map<string, string>()
  let n = 0
  const fake: typeof fetch = async (input, init) => {
    const url = String(input)
    const headers = (init?.headers ?? {}) as Record<string, string>
    const method = init?.method ?? 'GET'
    calls.push({ method, url, headers })
    const json = (status: number, body: unknown): Response => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } })
    const m = /\/v1\/devices\/([^/]+)\/commands(\?wait=\d+)?$/.exec(url)
    if (method === 'POST' && m) {
      const key = headers['idempotency-key']!
      let id = byKey.get(key)
      if (id === undefined) {
        id = `c${++n}`
        byKey.set(key, id)
        store.set(id, { id, device: m[1]!, state: 'completed', result: { pong: true }, history: [{ state: 'queued', at: 1 }, { state: 'completed', at: 2 }] })
      }
      return m[2] ? json(200, store.get(id)) : json(202, { id, device: m[1], state: 'queued' })
    }
    const g = /\/v1\/commands\/([^/?]+)$/.exec(url)
    if (g) return store.has(g[1]!) ? json(200, store.get(g[1]!)) : json(404, { error: 'unknown_command' })
    if (/\/v1\/commands\?since=/.test(url)) return json(200, { commands: [...store.values()], next: null })
    return json(500, {})
  }
  const d = new CommandDriver({ ingestUrl: 'http://ingest.test/', token: 'tok', rate: 200, waitMs: 1000, targets: () => ['d1', 'd2'], fetch: fake, pollMs: 5, idempotencyEvery: 3, pick: defaultPick })
  d.start()
  await new Promise((resolve) => setTimeout(resolve, 150))
  const open = await d.finish(5000)
  assert.equal(open, 0)
  assert.ok(d.counts.created >= 9, `created ${d.counts.created}`)
  assert.equal(d.counts.final, d.counts.created)
  assert.equal(d.counts.idempotencyMismatches, 0)
  assert.ok(d.counts.idempotencyRepeats >= 3)
  assert.deepEqual(new Set(d.sent.map((c) => c.kind)), new Set(['sync', 'async', 'deferred']))
  const posts = calls.filter((c) => c.method === 'POST')
  assert.ok(posts.every((p) => p.headers.authorization === 'Bearer tok' && typeof p.headers['idempotency-key'] === 'string'))
  assert.ok(posts.some((p) => p.url.endsWith('?wait=1000')), 'sync commands wait')
  assert.ok(calls.some((c) => /\/v1\/commands\?since=\d+/.test(c.url)), 'the feed was read')
  assert.ok(d.roundTrips().length > 0)
})
