import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Scheduler, type Clock } from '../../device-sim/scheduler.ts'

/** A fake clock: timers fire only when the test advances time. */
function fakeClock (start = 1_000_000): Clock & { advance: (ms: number, jitter?: () => number) => void, timers: number } {
  let now = start
  let timers: { at: number, fn: () => void, id: number }[] = []
  let ids = 0
  const c = {
    now: () => now,
    setTimer: (fn: () => void, ms: number) => { const id = ++ids; timers.push({ at: now + ms, fn, id }); return id },
    clearTimer: (h: unknown) => { timers = timers.filter((t) => t.id !== h) },
    get timers () { return timers.length },
    /** Advances time; each timer fires `jitter()` ms late (an event loop under load). */
    advance: (ms: number, jitter: () => number = () => 0) => {
      const end = now + ms
      for (;;) {
        timers.sort((a, b) => a.at - b.at)
        const t = timers[0]
        if (!t) break
        const fireAt = t.at + jitter()
        if (fireAt > end) break
        timers.shift()
        now = Math.max(now, fireAt)
        t.fn()
      }
      now = end
    }
  }
  return c
}

test('every slot fires at its absolute targets: no drift over 10,000 periods', () => {
  const clock = fakeClock()
  const fires: number[][] = [[], [], []]
  const s = new Scheduler(3, (slot, due) => { fires[slot]!.push(due) }, clock)
  const t0 = clock.now()
  s.add(0, t0, 100)
  s.add(1, t0 + 33, 100)
  s.add(2, t0 + 66, 1000 / 3) // non-integer period
  s.begin()
  clock.advance(1_000_000)
  assert.equal(fires[0]!.length, 10_001)
  assert.equal(fires[0]!.at(-1), t0 + 1_000_000)
  assert.equal(fires[1]!.length, 10_000)
  // tick k of slot 2 is due exactly at t0 + 66 + k * 1000/3, computed, not accumulated
  assert.equal(fires[2]!.length, 3000)
  assert.ok(Math.abs(fires[2]![2999]! - (t0 + 66 + 2999 * 1000 / 3)) < 1e-6)
})

test('a late event loop does not shift later targets (drift-free catch-up)', () => {
  const clock = fakeClock()
  let count = 0
  const dues: number[] = []
  const s = new Scheduler(1, (_slot, due) => { count++; dues.push(due) }, clock)
  const t0 = clock.now()
  s.add(0, t0, 10)
  s.begin()
  // every timer fires 7 ms late: with relative re-arming 1000 ticks would take 17 s
  clock.advance(10_000, () => 7)
  assert.ok(count >= 999 && count <= 1001, `fired ${count} ticks in 10 s at 100/s`)
  for (let i = 0; i < dues.length; i++) assert.equal(dues[i], t0 + i * 10)
  const late = s.lateness()
  assert.ok(late.maxMs <= 7 + 1e-9 && late.meanMs > 0)
})

test('one timer for all slots, and removed slots stop firing', () => {
  const clock = fakeClock()
  const counts = new Array(1000).fill(0) as number[]
  const s = new Scheduler(10, (slot) => { counts[slot]!++; if (slot % 2 === 1 && counts[slot] === 5) s.remove(slot) }, clock)
  for (let i = 0; i < 1000; i++) s.add(i, clock.now() + i, 1000) // grows past the initial capacity
  s.begin()
  assert.equal(clock.timers, 1)
  clock.advance(9_999)
  assert.equal(clock.timers, 1)
  for (let i = 0; i < 1000; i++) assert.equal(counts[i], i % 2 === 1 ? 5 : 10, `slot ${i}`)
  s.stop()
  assert.equal(clock.timers, 0)
  clock.advance(10_000)
  assert.equal(counts[0], 10)
})
