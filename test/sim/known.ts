/**
 * Scenarios of the acknowledgment-path simulation that fail for a known defect not fixed
 * on this branch. A run matching one is expected to fail; the CI test also insists that
 * each still fails at least once, so the entry is removed once the defect is fixed.
 */
import type { SimOptions } from './world.ts'

export type KnownFailure = { name: string, reason: string, matches: (o: SimOptions) => boolean }

export const KNOWN_FAILURES: KnownFailure[] = [
  {
    name: 'mqtt-broker-no-subscribers',
    reason: 'with --upstream-ack broker, a PUBACK with reason 0x10 (no matching subscribers) is counted as stored: the batch is deleted though nobody received it (gateway/flush/mqtt-upstream.ts)',
    matches: (o) => o.upstream === 'mqtt-broker' && o.noSubscribers
  }
]

export function knownFailure (o: SimOptions): KnownFailure | undefined {
  return KNOWN_FAILURES.find((k) => k.matches(o))
}
