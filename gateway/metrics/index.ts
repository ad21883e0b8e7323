/**
 * Gateway metrics, owned by the core, not by admin/, which only serves them. One prom-client Registry per gateway instance so tests can run several.
 * This file declares the intake, store, flush/upstream and dead-letter metrics; a component
 * with metrics of its own registers them into `registry` from its folder
 * (broker/limit-metrics.ts, broker/security.ts, broker/listeners.ts, broker/unmapped.ts,
 * mapping/index.ts) and gateway/index.ts adds the scrape-time gauges.
 *
 * Names, types, labels and help texts are contracts: docs/metrics.md, generated from this
 * registry (`npm run docs:metrics`), lists every one and test/integration/metrics-doc.test.ts
 * fails when the document and the registry disagree.
 * Names start `gateway_`, counters end `_total`, durations are histograms in seconds.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { HotCounter, type HotCell } from './hot-counter.ts'
import { HotHistogram } from './hot-histogram.ts'
import { DeviceStats } from './devices.ts'

export const INTAKE_OUTCOMES = ['stored', 'duplicate', 'invalid', 'too_old', 'acl_denied', 'store_failed', 'blocked_disconnect'] as const
export type IntakeOutcome = (typeof INTAKE_OUTCOMES)[number]

export class Metrics {
  readonly registry = new Registry()
  readonly intake: Counter<'outcome'>
  readonly pubackLatency: HotHistogram
  readonly commitOps: Histogram
  readonly commitSeconds: Histogram
  readonly evicted: Counter
  readonly dlqDropped: Counter
  readonly oversize: Counter
  readonly blocked: Gauge
  readonly upstreamBatches: Counter<'outcome'>
  readonly upstreamItems: Counter<'code'>
  readonly upstreamRequest: Histogram<'status'>
  readonly upstreamBytes: Counter
  readonly upstreamRetries: Counter<'reason'>
  readonly receipts: Counter
  readonly receiptsDropped: Counter
  readonly oldestAge: Gauge
  readonly implicitBoots: Counter
  readonly dlqActions: Counter<'action'>
  readonly dlqActionItems: Counter<'action'>
  /** per-device figures for the admin page (bounded; not exported to Prometheus: unbounded labels) */
  readonly devices: DeviceStats

  private readonly intakeHot: HotCounter<'outcome'>

  /** A counter of one intake outcome for the hot path (hot-counter.ts). */
  intakeOutcome (outcome: IntakeOutcome): HotCell { return this.intakeHot.cell(outcome) }

  constructor (opts: { defaultMetrics?: boolean, deviceStatsMax?: number } = {}) {
    this.devices = new DeviceStats(opts.deviceStatsMax ?? 10_000)
    const registers = [this.registry]
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'gateway_' })
    this.intakeHot = new HotCounter({ name: 'gateway_intake_readings_total', help: 'Readings received on devices/+/readings by outcome', label: 'outcome', registers })
    this.intake = this.intakeHot.counter
    this.pubackLatency = new HotHistogram({
      name: 'gateway_puback_latency_seconds',
      help: 'Time from a PUBLISH reaching intake to the release of its PUBACK (durable write, or ingest ack in delivered mode)',
      buckets: [0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30],
      registers
    })
    this.commitOps = new Histogram({ name: 'gateway_commit_batch_size', help: 'Operations per group-commit write', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096], registers })
    this.commitSeconds = new Histogram({ name: 'gateway_commit_seconds', help: 'Duration of one group-commit write', buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5], registers })
    this.evicted = new Counter({ name: 'gateway_evicted_items_total', help: 'Items evicted under fullPolicy=drop-oldest (reported upstream as evicted ranges)', registers })
    this.dlqDropped = new Counter({ name: 'gateway_dlq_dropped_total', help: 'Dead-letter records dropped, oldest first, to keep the dead-letter store within maxDlqItems/maxDlqBytes', registers })
    this.oversize = new Counter({ name: 'gateway_oversize_packets_total', help: 'Connections closed for an MQTT packet above maxPacketBytes', registers })
    this.blocked = new Gauge({ name: 'gateway_intake_blocked_readings', help: 'Readings waiting for buffer space (fullPolicy=block)', registers })
    this.upstreamBatches = new Counter({ name: 'gateway_upstream_batches_total', help: 'Upstream batch requests by outcome', labelNames: ['outcome'], registers })
    this.upstreamItems = new Counter({ name: 'gateway_upstream_items_total', help: 'Per-item upstream results by code', labelNames: ['code'], registers })
    this.upstreamRequest = new Histogram({ name: 'gateway_upstream_request_seconds', help: 'Upstream batch request duration', labelNames: ['status'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30], registers })
    this.upstreamBytes = new Counter({ name: 'gateway_upstream_bytes_sent_total', help: 'Request body bytes sent upstream', registers })
    this.upstreamRetries = new Counter({ name: 'gateway_upstream_retries_total', help: 'Batches or items scheduled for retry, by reason', labelNames: ['reason'], registers })
    this.receipts = new Counter({ name: 'gateway_receipts_published_total', help: 'Receipt messages published to devices/+/receipts', registers })
    this.receiptsDropped = new Counter({ name: 'gateway_receipts_dropped_total', help: 'Receipts not published (broker backlog over its bound, or publish failed); receipts are best effort', registers })
    this.implicitBoots = new Counter({ name: 'gateway_intake_implicit_boots_total', help: 'New implicit boots started for devices that send seq without boot and restarted their seq on a new connection', registers })
    this.oldestAge = new Gauge({ name: 'gateway_oldest_unacked_age_seconds', help: 'Age of the oldest buffered item not yet acknowledged upstream', registers })
    this.dlqActions = new Counter({ name: 'gateway_dlq_actions_total', help: 'Dead-letter actions (list, show, export, replay, purge) through the admin API', labelNames: ['action'], registers })
    this.dlqActionItems = new Counter({ name: 'gateway_dlq_action_items_total', help: 'Dead-letter records replayed or purged (or listed/exported)', labelNames: ['action'], registers })
  }

  /** A gauge whose value is read at scrape time. */
  gauge (name: string, help: string, labelNames: string[], collect: (g: Gauge) => void | Promise<void>): Gauge {
    return new Gauge({ name, help, labelNames, registers: [this.registry], async collect () { await collect(this) } })
  }
}
