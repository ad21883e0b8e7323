// Node-side code shared by the components (they may not import each other): unlike
// protocol/, these may do I/O. Imports nothing outside common/ and protocol/.
export * from './config.ts'
export * from './log.ts'
export * from './random.ts'
export * from './histogram.ts'
export * from './group-commit.ts'
export * from './page.ts'
export * from './signals.ts'
export * from './log-once.ts'
