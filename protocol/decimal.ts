/**
 * Decimal fractions exactly as float64s (upstream protocol v2, docs/protocol-v2.md): m / 10^k
 * with |m| < 2^52 and k <= 15 is the float64 nearest to the decimal, because m and 10^k are
 * exact doubles and IEEE division rounds correctly, so every language gets the same bits.
 */
export const MAX_SCALE = 15
export const MAX_MANTISSA = 2 ** 52
export const POW10 = Array.from({ length: MAX_SCALE + 1 }, (_, k) => 10 ** k)

/** m / 10^k, the float64 a decimal fraction denotes. */
export function decimalValue (m: number, k: number): number {
  return k === 0 ? m : m / POW10[k]!
}

/** The smallest k with v === m / 10^k for an integer |m| < 2^52, or -1. */
export function decimalScale (v: number): number {
  if (!Number.isFinite(v) || Object.is(v, -0)) return -1
  for (let k = 0; k <= MAX_SCALE; k++) {
    const m = Math.round(v * POW10[k]!)
    if (Math.abs(m) >= MAX_MANTISSA) return -1
    if (decimalValue(m, k) === v) return k
  }
  return -1
}
