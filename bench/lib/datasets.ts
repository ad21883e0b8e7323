/**
 * Deterministic batches of readings for the wire-size bench, as the gateway would send them
 * (one partition, consecutive gateway seqs, interleaved devices).
 *
 * - `sim`: what device-sim's sensor models send: 6 values (temperature 2 decimals, humidity
 *   and pressure 1 decimal, battery 2 decimals, two booleans), one boot, seq without gaps,
 *   device clocks in step.
 * - `noisy`: noisier sensors and a messier fleet: every value moves by up to 6 units of its
 *   last digit from one reading to the next (up to 15 for the accelerometer) (3-decimal temperature, 2-decimal humidity, pressure in Pa, CO2 in
 *   ppm, a 4-decimal accelerometer value around 0), an occasional text status, devices with
 *   different value sets arriving in random order, a fifth of them without seq and boot,
 *   text boots, device clocks off by up to 5 s with jitter, seq gaps.
 * - `stress`: the same fleet with 8x the noise and an accelerometer that jumps over its
 *   whole range: close to incompressible values, the worst case rather than a target.
 */
import type { BatchItem, Values } from '../../protocol/index.ts'
import { mulberry32 } from '../../common/index.ts'

const round = (v: number, d: number): number => Math.round(v * 10 ** d) / 10 ** d
const T0 = 1_795_759_000_000

export function simDataset (n: number, devices: number): BatchItem[] {
  const rnd = mulberry32(12345)
  const boot = 1_795_750_000_000
  const items: BatchItem[] = []
  for (let i = 0; i < n; i++) {
    const d = i % devices
    const temp = round(18 + 6 * Math.sin(i / 50) + rnd(), 2)
    items.push([3, 250_000 + i, `sim-${String(d).padStart(4, '0')}`, 1000 + Math.floor(i / devices), boot, T0 + i * 10, T0 + i * 10 + 7, {
      temperature_c: temp,
      humidity_pct: round(70 - temp + rnd() * 3, 1),
      pressure_hpa: round(1013 + rnd() * 4 - 2, 1),
      battery_pct: round(97 - i / 1000, 2),
      door_open: rnd() < 0.1,
      motion: rnd() < 0.05
    }])
  }
  return items
}

export function noisyDataset (n: number, devices: number): BatchItem[] {
  return messyDataset(n, devices, 1)
}

export function stressDataset (n: number, devices: number): BatchItem[] {
  return messyDataset(n, devices, 8)
}

/** `noise` scales every jump: 1 is a few units in the last digit, 8 is values that jump all over. */
function messyDataset (n: number, devices: number, noise: number): BatchItem[] {
  const rnd = mulberry32(777)
  const jitter = (lsb: number): number => (rnd() + rnd() + rnd() - 1.5) * 2 * lsb * noise
  const state = Array.from({ length: devices }, (_, d) => ({
    temp: 15 + 10 * rnd(), hum: 40 + 30 * rnd(), pa: 101_325 + (rnd() - 0.5) * 2000, co2: 400 + rnd() * 1000, seq: Math.floor(rnd() * 100_000), skew: Math.round((rnd() - 0.5) * 10_000),
    boot: d % 5 === 0 ? null : d % 3 === 0 ? `fw2-${Math.floor(rnd() * 1e6).toString(36)}` : 1_795_000_000 + d,
    seqless: d % 5 === 0, shape: d % 4
  }))
  const items: BatchItem[] = []
  for (let i = 0; i < n; i++) {
    const d = Math.floor(rnd() * devices)
    const st = state[d]!
    st.temp += jitter(0.002)
    st.hum = Math.min(100, Math.max(0, st.hum + jitter(0.02)))
    st.seq += rnd() < 0.05 ? 2 + Math.floor(rnd() * 5) : 1
    const values: Values = { temp_c: round(st.temp, 3), rh_pct: round(st.hum, 2) }
    st.pa += jitter(2)
    st.co2 = Math.max(350, st.co2 + jitter(2))
    if (st.shape !== 1) values.pressure_pa = Math.round(st.pa)
    if (st.shape === 2 || st.shape === 3) values.accel_g = round(jitter(0.0005) * (noise > 1 ? 100 : 1), 4)
    if (st.shape === 3) values.co2_ppm = Math.round(st.co2)
    if (rnd() < 0.02) values.status = rnd() < 0.5 ? 'ok' : 'low-battery'
    const rx = T0 + i * 7 + Math.floor(rnd() * 5)
    const ts = rnd() < 0.03 ? null : rx + st.skew + Math.round((rnd() - 0.5) * 40)
    items.push([5, 900_000 + i + (i > n / 2 ? 3 : 0), `dev-${String(d).padStart(5, '0')}`, st.seqless ? null : st.seq, st.seqless ? null : st.boot, ts, rx, values])
  }
  return items
}
