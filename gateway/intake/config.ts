/**
 * Intake configuration: the gateway flags the intake reads (the gateway's schema spreads
 * this one).
 */
import type { ConfigOf } from '../../common/index.ts'
import type { StoreConfig } from '../store/config.ts'

export const intakeSchema = {
  ackMode: { type: 'enum', values: ['persisted', 'delivered'] as const, default: 'persisted', doc: 'persisted: PUBACK when on disk; delivered: PUBACK when the ingest stored it' },
  maxBlockedReadings: { type: 'int', default: 1000, min: 0, doc: 'Readings waiting for space (block) before further publishers are disconnected' },
  overloadIntakeRatio: { type: 'number', default: 1.1, min: 0, max: 100, doc: 'While the gateway is CPU-bound (event loop busy 90% of a second), the upstream answers and the backlog grows, readings are admitted at most this many times the upload rate of the last second; the rest wait for their PUBACK and their devices are not read meanwhile (docs/design.md, overload). 0: off, the intake takes everything and the upload may fall under overload' },
  maxPayloadBytes: { type: 'int', default: 16 * 1024, min: 64, max: 1024 * 1024, doc: 'Largest reading payload in bytes; a larger one is acknowledged and dead-lettered' }
} as const

/** The intake's flags, and the store's bound on devices kept in memory (also bounds its per-device state). */
export type IntakeConfig = ConfigOf<typeof intakeSchema> & Pick<StoreConfig, 'dedupCacheDevices'>
