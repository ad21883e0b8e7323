/**
 * The intake's overload admission (gateway/intake/admission.ts) on injected sources: when it
 * limits and when it must not, the order it admits in, the read gates, and how it ends.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Admission, BUSY, MAX_HELD, MIN_BACKLOG, RESUME_BELOW, TICK_MS, type ReadGate } from '../../gateway/intake/admission.ts'

/** A reading arrives from `client`: true, it goes on now; false, it waits and `run` runs when admitted (as the intake calls it). */
function enter (adm: Admission, client: object, run: () => void): boolean {
  if (adm.admit()) return true
  adm.hold(client, run)
  return false
}

class World {
  t = 0
  uploaded = 0
  backlog = 100_000
  busy = 1
  readonly gates = new Map<object, { paused: boolean, pauses: number, resumes: number }>()
  readonly changes: Array<[boolean, number | null, string]> = []
  readonly failures: Array<[object, unknown]> = []
  readonly adm: Admission

  constructor (ratio = 1.1) {
    this.adm = new Admission(ratio, {
      uploaded: () => this.uploaded,
      backlog: () => this.backlog,
      busy: () => this.busy,
      now: () => this.t,
      gateOf: (c) => this.gate(c),
      failed: (c, err) => this.failures.push([c, err])
    }, (limiting, limit, why) => this.changes.push([limiting, limit, why]))
  }

  gate (c: object): ReadGate {
    let g = this.gates.get(c)
    if (!g) { g = { paused: false, pauses: 0, resumes: 0 }; this.gates.set(c, g) }
    const s = g
    return { pause: () => { s.paused = true; s.pauses++ }, resume: () => { s.paused = false; s.resumes++ } }
  }

  /** One second of `admit` readings offered and `upload` answered per second, in ticks. */
  second (admit: number, upload: number, client: object = {}): void {
    for (let k = 0; k < 1000 / TICK_MS; k++) {
      for (let i = 0; i < admit * TICK_MS / 1000; i++) enter(this.adm, client, () => {})
      this.uploaded += upload * TICK_MS / 1000
      this.t += TICK_MS
      this.adm.releaseDue() // what the release timer does
      this.adm.control()
    }
  }
}

function overloaded (w: World): void {
  // 30,000/s taken, 10,000/s uploaded, the loop busy all the time, backlog growing
  w.second(30_000, 10_000)
  w.second(30_000, 10_000)
}

test('an overloaded gateway whose upstream answers limits admission to about ratio x the upload rate', () => {
  const w = new World(1.1)
  overloaded(w)
  assert.equal(w.adm.limiting, true)
  const limit = w.adm.status().limitPerS!
  // it starts at the larger of 1.1 x uploaded and half of what was taken (no cliff)
  assert.ok(limit >= 11_000 && limit <= 15_000, `limit ${limit}`)
  assert.equal(w.changes[0]![0], true)
  assert.match(w.changes[0]![2], /event loop busy 100%/)
  // while it stays overloaded, the limit follows 1.1 x the upload rate
  for (let i = 0; i < 4; i++) w.second(30_000, 12_000)
  const after = w.adm.status().limitPerS!
  assert.ok(after >= 12_000 && after <= 14_000, `limit ${after} should follow 1.1 x 12,000`)
})

test('no limit without each condition: a busy loop, uploads, a backlog growing because of the intake, a real backlog', () => {
  const cases: Array<[string, (w: World) => void]> = [
    ['loop not busy', (w) => { w.busy = BUSY - 0.05 }],
    ['upstream not answering (outage: the buffer takes everything)', (w) => { w.second(30_000, 0); w.second(30_000, 0) }],
    ['intake within ratio x upload', (w) => { w.second(10_500, 10_000); w.second(10_500, 10_000) }],
    ['backlog small', (w) => { w.backlog = MIN_BACKLOG - 1 }]
  ]
  for (const [name, setup] of cases) {
    const w = new World(1.1)
    setup(w)
    if (name === 'loop not busy' || name === 'backlog small') overloaded(w)
    assert.equal(w.adm.limiting, false, name)
    assert.equal(w.adm.held, 0, name)
    w.adm.close()
  }
  // ratio 0: off, whatever the load
  const off = new World(0)
  off.adm.start()
  overloaded(off)
  assert.equal(off.adm.enabled, false)
  assert.equal(off.adm.limiting, false)
})

test('held readings are admitted in arrival order at the limit; a client with one waiting is not read until it is admitted', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval'] })
  const w = new World()
  w.adm.close()
  w.adm.limitTo(1000, 'test') // 1,000/s: one per millisecond
  const a = {}
  const b = {}
  const order: string[] = []
  const admitted: boolean[] = []
  for (let i = 0; i < 6; i++) {
    const who = i % 2 === 0 ? a : b
    const name = `${i % 2 === 0 ? 'a' : 'b'}${i}`
    const now = enter(w.adm, who, () => order.push(name))
    if (now) order.push(name)
    admitted.push(now)
  }
  assert.deepEqual(admitted, [false, false, false, false, false, false], 'no tokens saved up at the start of a limit')
  assert.equal(w.adm.held, 6)
  assert.equal(w.gates.get(a)!.paused, true)
  assert.equal(w.gates.get(b)!.paused, true)
  assert.equal(w.gates.get(a)!.pauses, 1, 'paused once, not per held reading')
  w.t += 3 // three tokens
  w.adm.releaseDue()
  assert.deepEqual(order, ['a0', 'b1', 'a2'])
  assert.equal(w.gates.get(a)!.paused, true, 'a still has a4 waiting')
  w.t += 3
  w.adm.releaseDue()
  assert.deepEqual(order, ['a0', 'b1', 'a2', 'b3', 'a4', 'b5'])
  assert.equal(w.gates.get(a)!.paused, false)
  assert.equal(w.gates.get(b)!.paused, false)
  assert.equal(w.gates.get(a)!.resumes, 1)
  // a reading arriving while others wait waits behind them even if a token is there
  enter(w.adm, a, () => order.push('a6'))
  w.t += 1
  assert.equal(enter(w.adm, b, () => order.push('b7')), false)
  w.adm.releaseDue()
  assert.deepEqual(order.slice(6), ['a6'])
})

test('a device whose readings were admitted is read again only once fewer than RESUME_BELOW wait', () => {
  const w = new World()
  w.adm.limitTo(1000, 'test')
  const a = {}
  const b = {}
  enter(w.adm, a, () => {})
  for (let i = 0; i < RESUME_BELOW + 5; i++) enter(w.adm, b, () => {})
  w.t += 1
  w.adm.releaseDue()
  assert.equal(w.adm.held, RESUME_BELOW + 5)
  assert.equal(w.gates.get(a)!.paused, true, 'nothing of a waits, but too many readings do')
  w.t += 6
  w.adm.releaseDue()
  assert.equal(w.adm.held, RESUME_BELOW - 1)
  assert.equal(w.gates.get(a)!.paused, false, 'read again')
  assert.equal(w.gates.get(b)!.paused, true)
  w.adm.close()
  assert.equal(w.gates.get(b)!.paused, false, 'the end of the limit reads every device again')
})

test('when the upstream stops answering, every held reading is admitted at once and the limit ends', () => {
  const w = new World()
  overloaded(w)
  assert.equal(w.adm.limiting, true)
  const ran: number[] = []
  const c = {}
  for (let i = 0; i < 50; i++) enter(w.adm, c, () => ran.push(i))
  assert.ok(w.adm.held > 0)
  w.second(0, 0)
  assert.equal(w.adm.limiting, true, 'one second without answers is not yet an outage')
  w.second(0, 0)
  assert.equal(w.adm.limiting, false)
  assert.equal(w.adm.held, 0)
  assert.equal(ran.length, 50)
  assert.deepEqual(ran, [...ran].sort((x, y) => x - y))
  assert.equal(w.gates.get(c)!.paused, false)
  assert.match(w.changes.at(-1)![2], /stopped answering/)
})

test('the limit ends after a second in which nothing waited, and grows while the loop has room', () => {
  const w = new World()
  overloaded(w)
  w.busy = 0.5
  const limits: number[] = []
  for (let k = 0; k < 8; k++) {
    w.t += TICK_MS
    w.uploaded += 2500
    w.adm.control()
    limits.push(w.adm.status().limitPerS!)
  }
  // once the second's average is below 80% busy, each tick adds a tenth
  assert.ok(limits[7]! > limits[4]! * 1.3, `room in the loop: the limit grows (${limits.join(', ')})`)
  for (let k = 0; k < 4 && w.adm.limiting; k++) w.second(100, 10_000)
  assert.equal(w.adm.limiting, false)
  assert.equal(w.adm.held, 0)
  assert.match(w.changes.at(-1)![2], /no reading waited/)
})

test('the limit ends once the backlog is uploaded', () => {
  const w = new World()
  overloaded(w)
  assert.equal(w.adm.limiting, true)
  w.backlog = MIN_BACKLOG
  w.second(30_000, 10_000)
  assert.equal(w.adm.limiting, false)
  assert.equal(w.adm.held, 0)
  assert.match(w.changes.at(-1)![2], /backlog is uploaded/)
})

test('close admits everything held; beyond MAX_HELD readings are admitted rather than held', () => {
  const w = new World()
  w.adm.limitTo(1, 'test')
  const c = {}
  let ran = 0
  for (let i = 0; i < MAX_HELD; i++) enter(w.adm, c, () => { ran++ })
  assert.equal(w.adm.held, MAX_HELD)
  assert.equal(enter(w.adm, c, () => { ran++ }), true, 'the bound: admitted, not held')
  assert.equal(w.adm.overflowTotal, 1)
  w.adm.close()
  assert.equal(ran, MAX_HELD)
  assert.equal(w.adm.held, 0)
  assert.equal(w.adm.limiting, false)
})

test('a held reading whose handling throws is reported with its client, and the readings behind it go on', () => {
  const w = new World()
  w.adm.limitTo(1000, 'test')
  const a = {}
  const b = {}
  const ran: string[] = []
  enter(w.adm, a, () => { throw new Error('boom') })
  enter(w.adm, b, () => ran.push('b'))
  w.t += 2
  w.adm.releaseDue()
  assert.deepEqual(ran, ['b'])
  assert.equal(w.failures.length, 1)
  assert.equal(w.failures[0]![0], a)
  assert.match(String(w.failures[0]![1]), /boom/)
  assert.equal(w.gates.get(a)!.paused, false, 'its reads are not left held')
  w.adm.close()
})
