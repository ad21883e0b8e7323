/** Counters and a log-bucket histogram shared by every device of a simulation. */
import { Histogram } from '../common/index.ts'

export { Histogram }

export type Counters = {
  /** Readings sampled (a seq was assigned). */
  generated: number
  /** Readings not sampled because the device's unacked queue was full. */
  skipped: number
  /** PUBLISH packets written, first sends and resends. */
  publishes: number
  resends: number
  acked: number
  connects: number
  connectErrors: number
  /** Connections that closed while the device wanted to be online. */
  connectionLosses: number
  churnDisconnects: number
  reboots: number
  /** Unacknowledged readings dropped by reboots (allowed loss). */
  droppedOnReboot: number
  receipts: number
  receiptErrors: number
  /** Command deliveries (first deliveries and redeliveries). */
  commandsReceived: number
  /** Deliveries of an id already in the device's flash (answered from the stored answer). */
  commandsRedelivered: number
  commandsExecuted: number
  /** Commands that arrived after their expiresAt (answered "expired", not executed). */
  commandsExpired: number
  commandAnswers: number
  /** Command messages that could not be decoded (no id, so no answer). */
  commandErrors: number
  /** SUBSCRIBEs to the commands topic the broker refused (SUBACK 0x80). */
  commandSubscribeRefused: number
}

export function newCounters (): Counters {
  return { generated: 0, skipped: 0, publishes: 0, resends: 0, acked: 0, connects: 0, connectErrors: 0, connectionLosses: 0, churnDisconnects: 0, reboots: 0, droppedOnReboot: 0, receipts: 0, receiptErrors: 0, commandsReceived: 0, commandsRedelivered: 0, commandsExecuted: 0, commandsExpired: 0, commandAnswers: 0, commandErrors: 0, commandSubscribeRefused: 0 }
}

export type SimStats = {
  counters: Counters
  /** PUBLISH to PUBACK on the same connection. */
  pubackMs: Histogram
  /** First publish of seq `upTo` to the receipt that confirms it stored upstream. */
  receiptMs: Histogram
  /** The last connection error seen (e.g. ECONNREFUSED), for a run that never connects. */
  lastConnectError: string | null
}

export function newStats (): SimStats {
  return { counters: newCounters(), pubackMs: new Histogram(), receiptMs: new Histogram(), lastConnectError: null }
}
