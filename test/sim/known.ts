/**
 * Scenarios of the acknowledgment-path simulation that fail for a known defect not fixed
 * yet (none now: the last, a broker-mode PUBACK 0x10 counted as stored, is fixed). A run matching one is expected to fail; the CI test also insists that
 * each still fails at least once, so the entry is removed once the defect is fixed.
 */
import type { SimOptions } from './world.ts'

export type KnownFailure = { name: string, reason: string, matches: (o: SimOptions) => boolean }

export const KNOWN_FAILURES: KnownFailure[] = []

export function knownFailure (o: SimOptions): KnownFailure | undefined {
  return KNOWN_FAILURES.find((k) => k.matches(o))
}
