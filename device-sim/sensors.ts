/**
 * Sensor models a user recognises, deterministic per (seed, device) so runs repeat:
 * - temperature (°C): a per-device base, a diurnal sine (coolest ~03:00, warmest ~15:00
 *   local solar time of the reading's `ts`) and AR(1) noise;
 * - humidity (%RH): anti-correlated with temperature around the device's base (warm air
 *   holds more water, so relative humidity falls as it warms), clamped to 0..100;
 * - pressure (hPa): a mean-reverting random walk around ~1013 (weather drifting);
 * - battery (%): decays a little with every reading (radio on), never below 0;
 * - door (boolean): a latch that occasionally flips; motion (boolean): occasional events.
 */
import { type Values } from '../protocol/index.ts'
import { mulberry32 } from '../common/index.ts'

/** Seeded PRNG (protocol's mulberry32). */
export const rng = mulberry32

/** Stable 32-bit seed from a string (FNV-1a), mixed with a run seed. */
export function seedOf (s: string, runSeed: number): number {
  let h = 0x811c9dc5 ^ runSeed
  for (let i = 0; i < s.length; i++) { h ^= s.charCodeAt(i); h = Math.imul(h, 0x01000193) }
  return h >>> 0
}

/** Standard normal from two uniforms (Box-Muller). */
function gauss (r: () => number): number {
  const u = 1 - r()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r())
}

export const SENSOR_LIMITS = {
  temperatureC: [-10, 45],
  humidityPct: [0, 100],
  pressureHpa: [950, 1060],
  batteryPct: [0, 100]
} as const

const DAY_MS = 86_400_000
const round = (x: number, d: number): number => Math.round(x * 10 ** d) / 10 ** d
const clamp = (x: number, [lo, hi]: readonly [number, number]): number => Math.min(hi, Math.max(lo, x))

export type SensorState = {
  r: () => number
  baseTempC: number
  amplitudeC: number
  /** Longitude offset of the device's solar day, in ms. */
  solarOffsetMs: number
  tempNoise: number
  baseHumidityPct: number
  pressureHpa: number
  batteryPct: number
  drainPerReading: number
  door: boolean
}

export function createSensors (seed: number): SensorState {
  const r = rng(seed)
  return {
    r,
    baseTempC: 18 + r() * 6,
    amplitudeC: 2 + r() * 3,
    solarOffsetMs: Math.floor((r() - 0.5) * 4 * 3_600_000),
    tempNoise: 0,
    baseHumidityPct: 40 + r() * 20,
    pressureHpa: 1003 + r() * 20,
    batteryPct: 85 + r() * 15,
    drainPerReading: 0.0005 + r() * 0.001,
    door: false
  }
}

/** The diurnal component alone: -1 at ~03:00 .. +1 at ~15:00 solar time. */
export function diurnal (tsMs: number, solarOffsetMs = 0): number {
  const phase = (((tsMs + solarOffsetMs) % DAY_MS) + DAY_MS) % DAY_MS / DAY_MS
  return Math.sin(2 * Math.PI * (phase - 0.375))
}

/** Advances the models to `tsMs` and returns one reading's values. */
export function sample (s: SensorState, tsMs: number): Values {
  const r = s.r
  s.tempNoise = 0.9 * s.tempNoise + 0.08 * gauss(r)
  const temp = clamp(s.baseTempC + s.amplitudeC * diurnal(tsMs, s.solarOffsetMs) + s.tempNoise, SENSOR_LIMITS.temperatureC)
  const humidity = clamp(s.baseHumidityPct - 2.5 * (temp - s.baseTempC) + 0.5 * gauss(r), SENSOR_LIMITS.humidityPct)
  s.pressureHpa = clamp(s.pressureHpa + 0.01 * (1013 - s.pressureHpa) + 0.05 * gauss(r), SENSOR_LIMITS.pressureHpa)
  s.batteryPct = Math.max(0, s.batteryPct - s.drainPerReading)
  if (r() < 0.01) s.door = !s.door
  return {
    temperature_c: round(temp, 2),
    humidity_pct: round(humidity, 1),
    pressure_hpa: round(s.pressureHpa, 2),
    battery_pct: round(s.batteryPct, 2),
    door_open: s.door,
    motion: r() < 0.05
  }
}
