/**
 * The goals bench/e2e.ts checks over the rate steps of one upstream, pure (unit tested):
 * the highest sustained rate against the goal, and overload that must not cut the upload:
 * past the highest sustained rate, the uploaded (stored) rate must not fall as the offered
 * rate rises. A fall smaller than `tolerance` (a share of the previous step's upload) is
 * counted as noise, not as a fall.
 */
import type { Check } from './types.ts'

export type Step = { offered: number, acked: number, uploaded: number, p99Ms: number, sustained: boolean }

export function e2eChecks (steps: Step[], label: string, goalPerSec = 30_000, tolerance = 0.03): Check[] {
  const byRate = [...steps].sort((a, b) => a.offered - b.offered)
  const sustained = byRate.filter((s) => s.sustained).map((s) => s.offered)
  const best = sustained.length ? Math.max(...sustained) : 0
  const tried = byRate.length ? Math.max(...byRate.map((s) => s.offered)) : 0
  const out: Check[] = [{
    name: `${label}: end-to-end sustained rate`,
    target: `>= ${goalPerSec.toLocaleString('en-US')}/s`,
    value: best ? `${best.toLocaleString('en-US')}/s of the rates tried (up to ${tried.toLocaleString('en-US')}/s)` : 'none of the rates tried',
    pass: best >= goalPerSec
  }]
  const past = byRate.filter((s) => s.offered > best)
  if (past.length === 0) {
    out.push({ name: `${label}: upload past the sustained rate does not fall`, target: 'uploaded/s never falls as offered/s rises', value: 'no step past the sustained rate', pass: null })
    return out
  }
  const chain = [byRate.filter((s) => s.offered <= best).pop(), ...past].filter((s): s is Step => s !== undefined)
  let falls = 0
  for (let i = 1; i < chain.length; i++) if (chain[i]!.uploaded < chain[i - 1]!.uploaded * (1 - tolerance)) falls++
  out.push({
    name: `${label}: upload past the sustained rate does not fall`,
    target: `uploaded/s never falls (by more than ${Math.round(tolerance * 100)}%) as offered/s rises`,
    value: chain.map((s) => `${fmt(s.offered)} offered: ${fmt(s.acked)} acked, ${fmt(s.uploaded)} uploaded, p99 ${s.p99Ms} ms`).join('; '),
    pass: chain.length > 1 ? falls === 0 : null
  })
  return out
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
