/** Shapes shared by the bench scripts: the load generator's result and a results-file record. */
import type { Percentiles } from '../../common/index.ts'

export type LoadErrors = {
  /** CONNECT refused, or the socket failed before CONNACK. */
  connect: number
  socket: number
  /** Connections the broker closed during the run. */
  disconnects: number
  /** Publishes still without PUBACK when the drain timed out. */
  unacked: number
  /** [MQTT-4.6.0-2] PUBACK that was not for the oldest outstanding publish. */
  outOfOrderAcks: number
  unexpectedAcks: number
  /** Open loop: scheduled publishes not sent (connection down or at its cap). */
  skipped: number
}

export type LoadResult = {
  type: 'result'
  mode: 'closed' | 'open'
  connections: number
  inflight: number | null
  rate: number | null
  durationS: number
  warmupS: number
  connected: number
  connectMs: number
  sent: number
  acked: number
  windowSent: number
  windowAcked: number
  msgsPerSec: number
  sendPerSec: number
  latency: Percentiles
  maxScheduleLagMs: number | null
  loadgenCpuPct: number
  loadgenElu: number
  errors: LoadErrors
  errorSamples: string[]
  /** One entry per second of the window: PUBACKs read, latency of publishes acked in it. */
  timeline: { acks: number, p50Ms: number, p99Ms: number, maxMs: number }[]
}

/**
 * One line of bench/results/*.jsonl. `scenario`, `system`, `params` and `ts` identify it;
 * bench/update-results.ts renders the latest record per (scenario, system, params). The
 * metric fields are optional so every scenario reports what it measures.
 */
export type BenchRecord = {
  scenario: string
  kind?: 'result' | 'checks'
  runId: string
  ts: string
  gitSha: string
  node: string
  host: { cpus: string, ncpu: number, os: string, pinned: string }
  system: string
  /** The system the ratio column compares against, in the same run and params. */
  baseline?: string
  params: Record<string, string | number | boolean | null>
  msgsPerSec?: number
  p50Ms?: number
  p99Ms?: number
  p999Ms?: number
  peakRssMb?: number
  errors?: number
  command: string
  [extra: string]: unknown
}

export type Check = { name: string, target: string, value: string, pass: boolean | null }
