// The wire formats only: what crosses MQTT and HTTP between the components. Node-side shared
// code (config parser, logger, histogram, group commit, page server) is in common/.
export * from './codes.ts'
export * from './errors.ts'
export * from './topics.ts'
export * from './hash.ts'
export * from './cbor.ts'
export * from './reading.ts'
export * from './payload-text.ts'
export * from './batch.ts'
export * from './item-encoder.ts'
export * from './cbor-writer.ts'
export * from './batch-v2.ts'
export * from './version.ts'
