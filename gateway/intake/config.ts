/**
 * Intake configuration: the gateway flags the intake reads (the gateway's schema spreads
 * this one).
 */
import type { ConfigOf } from '../../common/index.ts'
import type { StoreConfig } from '../store/config.ts'

export const intakeSchema = {
  ackMode: { type: 'enum', values: ['persisted', 'delivered'] as const, default: 'persisted', doc: 'persisted: PUBACK when on disk; delivered: PUBACK when the ingest stored it' },
  maxBlockedReadings: { type: 'int', default: 1000, min: 0, doc: 'Readings waiting for space (block) before further publishers are disconnected' },
  maxPayloadBytes: { type: 'int', default: 16 * 1024, min: 64, max: 1024 * 1024, doc: 'Largest reading payload in bytes; a larger one is acknowledged and dead-lettered' }
} as const

/** The intake's flags, and the store's bound on devices kept in memory (also bounds its per-device state). */
export type IntakeConfig = ConfigOf<typeof intakeSchema> & Pick<StoreConfig, 'dedupCacheDevices'>
