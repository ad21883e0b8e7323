/** Prometheus metrics of the ingest (own Registry, names `ingest_*`, docs/design.md section 9). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { COMMAND_STATES } from '../protocol/commands.ts'
import type { CommandStore } from './commands/store.ts'
import { COUNT_KINDS, type Sink } from './sinks/types.ts'

export type IngestMetrics = ReturnType<typeof createMetrics>

/** Waits in progress on commands: the callers' `POST ?wait` and the gateways' long polls. */
export type CommandWaits = { caller: number, gateway: number }

export function createMetrics (sink: () => Sink | undefined, commandStore: () => CommandStore | undefined = () => undefined, commandWaits: () => CommandWaits | undefined = () => undefined) {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'ingest_' })
  const m = {
    registry,
    requests: new Counter({ name: 'ingest_http_requests_total', help: 'HTTP requests by route and status', labelNames: ['route', 'status'] as const, registers: [registry] }),
    requestSeconds: new Histogram({ name: 'ingest_http_request_duration_seconds', help: 'HTTP request duration, body read to answer', labelNames: ['route'] as const, buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] }),
    receivedBytes: new Counter({ name: 'ingest_received_bytes_total', help: 'Batch body bytes received, as sent (compressed or not), by content-encoding and protocol version', labelNames: ['encoding', 'version'] as const, registers: [registry] }),
    items: new Counter({ name: 'ingest_items_total', help: 'Batch items answered, by result code', labelNames: ['code'] as const, registers: [registry] }),
    batchItems: new Histogram({ name: 'ingest_batch_items', help: 'Items per accepted batch', buckets: [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000], registers: [registry] }),
    evictedRanges: new Counter({ name: 'ingest_evicted_ranges_received_total', help: 'Evicted ranges received from gateways (repeats included; see ingest_store_items{kind="evicted"})', registers: [registry] }),
    storeItems: new Gauge({
      name: 'ingest_store_items',
      help: 'Items counted by the sink since the store was created (persisted): stored, duplicates, rejected, evicted (data loss, ranges counted once), conflicts (natural-key conflicts kept)',
      labelNames: ['kind'] as const,
      registers: [registry],
      async collect () {
        const st = await sink()?.stats().catch(() => undefined)
        if (!st) return
        for (const kind of COUNT_KINDS) this.set({ kind }, st[kind])
      }
    }),
    authFailures: new Counter({ name: 'ingest_auth_failures_total', help: 'Requests with a wrong bearer token, by side (write = batches and the gateways\' command routes, read = query API, stats, page data, metrics, command = the command API)', labelNames: ['side'] as const, registers: [registry] }),
    authThrottled: new Counter({ name: 'ingest_auth_throttled_total', help: 'Requests answered 429 without checking their token: their address is in back-off after wrong tokens', labelNames: ['side'] as const, registers: [registry] }),
    authBackoffAddresses: new Gauge({ name: 'ingest_auth_backoff_addresses', help: 'Addresses remembered for the wrong-token back-off (at most --auth-tracked-addresses)', registers: [registry] }),
    conflicts: new Counter({ name: 'ingest_natural_key_conflicts_total', help: 'Items kept as natural-key conflicts: a stored reading of the same fleet, device, boot and seq has other content (ts or values); listed by GET /v1/conflicts', registers: [registry] }),
    rejectedBatches: new Counter({ name: 'ingest_rejected_batches_total', help: 'Batches refused as a whole, by reason', labelNames: ['reason'] as const, registers: [registry] }),
    outOfRangeItems: new Counter({ name: 'ingest_partition_out_of_range_items_total', help: 'Items answered rejected because their partition is not below --max-partitions', registers: [registry] }),
    chaos: new Counter({ name: 'ingest_chaos_injected_total', help: 'Injected faults, by kind', labelNames: ['kind'] as const, registers: [registry] }),
    commitSeconds: new Histogram({ name: 'ingest_sink_commit_duration_seconds', help: 'Duration of one sink group commit (fsync included)', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1], registers: [registry] }),
    commitRequests: new Histogram({ name: 'ingest_sink_commit_requests', help: 'Requests written by one sink group commit', buckets: [1, 2, 4, 8, 16, 32, 64], registers: [registry] }),
    inFlight: new Gauge({ name: 'ingest_batches_in_flight', help: 'Batch requests being processed', registers: [registry] }),
    commandTransitions: new Counter({ name: 'ingest_commands_total', help: 'Commands to devices that moved into each state (by this process: created queued, gateway reports, cancels, expiry)', labelNames: ['state'] as const, registers: [registry] }),
    commands: new Gauge({
      name: 'ingest_commands',
      help: 'Commands to devices in each state now, from the command store (every ingest process sharing it)',
      labelNames: ['state'] as const,
      registers: [registry],
      async collect () {
        const c = await commandStore()?.counts().catch(() => undefined)
        if (!c) return
        for (const state of COMMAND_STATES) this.set({ state }, c[state])
      }
    }),
    commandWaiters: new Gauge({
      name: 'ingest_command_waiters',
      help: 'Waits in progress on commands in this process, by kind (caller = a POST with ?wait waiting for its command to finish, gateway = a gateway\'s long poll waiting for commands)',
      labelNames: ['kind'] as const,
      registers: [registry],
      collect () {
        const w = commandWaits()
        if (!w) return
        this.set({ kind: 'caller' }, w.caller)
        this.set({ kind: 'gateway' }, w.gateway)
      }
    }),
    commandReports: new Counter({ name: 'ingest_command_reports_total', help: 'Gateways\' command reports answered, by result code (0 applied, 1 duplicate, 2 retry, 3 rejected)', labelNames: ['code'] as const, registers: [registry] }),
    commandRefusals: new Counter({ name: 'ingest_command_refusals_total', help: 'Command requests refused, by reason (a limit, an unknown or offline device, a reused Idempotency-Key, a gateway refused over MQTT)', labelNames: ['reason'] as const, registers: [registry] }),
    dedupSeqs: new Gauge({
      name: 'ingest_dedup_tracked_seqs',
      help: 'Seqs held in dedup state (at or above the gateways\' floors), in loaded partitions',
      registers: [registry],
      collect () { const s = sink()?.dedupState?.(); if (s) this.set(s.seqs) }
    }),
    dedupEpochs: new Gauge({
      name: 'ingest_dedup_epochs_in_memory',
      help: '(gateway, epoch) pairs whose dedup state is held in memory (at most --dedup-epochs-per-gateway per gateway)',
      registers: [registry],
      collect () { const s = sink()?.dedupState?.(); if (s?.epochs !== undefined) this.set(s.epochs) }
    }),
    dedupRuns: new Gauge({
      name: 'ingest_dedup_runs',
      help: 'Runs [from, to] holding the dedup seqs, in loaded partitions',
      registers: [registry],
      collect () { const s = sink()?.dedupState?.(); if (s) this.set(s.runs) }
    })
  }
  return m
}
