import assert from 'node:assert/strict'
import { test } from 'node:test'
import { validateValues } from '../../protocol/index.ts'
import { createSensors, diurnal, rng, sample, SENSOR_LIMITS } from '../../device-sim/sensors.ts'

const HOUR = 3_600_000
const T0 = Date.UTC(2025, 5, 1, 0, 0, 0)

function pearson (xs: number[], ys: number[]): number {
  const n = xs.length
  const mx = xs.reduce((a, b) => a + b, 0) / n
  const my = ys.reduce((a, b) => a + b, 0) / n
  let sxy = 0; let sxx = 0; let syy = 0
  for (let i = 0; i < n; i++) { sxy += (xs[i]! - mx) * (ys[i]! - my); sxx += (xs[i]! - mx) ** 2; syy += (ys[i]! - my) ** 2 }
  return sxy / Math.sqrt(sxx * syy)
}

test('readings stay in physical ranges and are valid payload values', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const s = createSensors(seed)
    for (let i = 0; i < 2000; i++) {
      const v = sample(s, T0 + i * 60_000)
      validateValues(v, 'values')
      for (const [k, [lo, hi]] of [['temperature_c', SENSOR_LIMITS.temperatureC], ['humidity_pct', SENSOR_LIMITS.humidityPct], ['pressure_hpa', SENSOR_LIMITS.pressureHpa], ['battery_pct', SENSOR_LIMITS.batteryPct]] as const) {
        const x = v[k] as number
        assert.ok(x >= lo && x <= hi, `${k}=${x} outside ${lo}..${hi}`)
      }
      assert.equal(typeof v.door_open, 'boolean')
      assert.equal(typeof v.motion, 'boolean')
    }
  }
})

test('temperature follows the day: warmer mid-afternoon than before dawn', () => {
  assert.ok(diurnal(T0 + 15 * HOUR) > 0.99)
  assert.ok(diurnal(T0 + 3 * HOUR) < -0.99)
  const s = createSensors(7)
  s.solarOffsetMs = 0
  const at = (h: number): number => { let sum = 0; for (let i = 0; i < 50; i++) sum += sample(s, T0 + h * HOUR + i * 1000).temperature_c as number; return sum / 50 }
  assert.ok(at(15) - at(3) > 3, 'afternoon at least 3 °C warmer than 03:00')
})

test('humidity is anti-correlated with temperature', () => {
  const s = createSensors(3)
  const t: number[] = []; const h: number[] = []
  for (let i = 0; i < 24 * 60; i++) { const v = sample(s, T0 + i * 60_000); t.push(v.temperature_c as number); h.push(v.humidity_pct as number) }
  const r = pearson(t, h)
  assert.ok(r < -0.8, `correlation ${r} should be strongly negative`)
})

test('battery only decays; pressure drifts but stays near sea level; events are occasional', () => {
  const s = createSensors(11)
  let prev = Infinity; let motion = 0; let doorFlips = 0; let door = false
  const p: number[] = []
  for (let i = 0; i < 5000; i++) {
    const v = sample(s, T0 + i * 1000)
    assert.ok((v.battery_pct as number) <= prev)
    prev = v.battery_pct as number
    p.push(v.pressure_hpa as number)
    if (v.motion) motion++
    if (v.door_open !== door) { doorFlips++; door = v.door_open as boolean }
  }
  assert.ok(Math.max(...p) - Math.min(...p) > 0.2, 'pressure drifts')
  assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) / p.length - 1013) < 20)
  assert.ok(motion > 100 && motion < 500, `motion events ${motion}`)
  assert.ok(doorFlips > 10 && doorFlips < 150, `door flips ${doorFlips}`)
})

test('models are deterministic per seed', () => {
  const a = createSensors(42); const b = createSensors(42)
  for (let i = 0; i < 100; i++) assert.deepEqual(sample(a, T0 + i), sample(b, T0 + i))
  const r = rng(5); const xs = Array.from({ length: 1000 }, r)
  assert.ok(xs.every((x) => x >= 0 && x < 1))
})
