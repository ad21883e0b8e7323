/**
 * The admin page's live figures: one sample a second, computed once whatever the number
 * of viewers, kept for the last 5 minutes (so a page opened now draws its charts at once)
 * and pushed to the page over server-sent events (sse.ts).
 *
 * Rates are differences of the Prometheus counters between two samples; PUBACK p50/p99 are
 * read from the histogram's bucket counts added during the interval (linear inside a
 * bucket, like Prometheus' histogram_quantile), so nothing is added to the per-reading path.
 */
import type { Counter, Histogram } from 'prom-client'
import type { UnstoredStatus } from '../broker/unmapped.ts'
import type { MqttUpstreamStatus } from '../flush/mqtt-upstream.ts'
import type { Metrics } from '../metrics/index.ts'

export const SAMPLE_INTERVAL_MS = 1000
export const HISTORY = 300

/** What the gateway reports about itself for a sample (its /status plus readiness). */
export type LiveSource = {
  status: () => Promise<LiveStatus>
  ready: () => { ready: boolean, delivery?: boolean, reasons: string[] }
}

export type LiveStatus = {
  gateway: string
  epoch: string
  buffered: { items: number, bytes: number }
  bufferFull?: boolean
  dlq: { items: number }
  partitions: { p: number, depth: number, oldestAgeMs: number | null }[]
  /** `mqtt`: the MQTT upstream's connection, in-flight batches and oldest unanswered (an mqtt:// upstream only) */
  upstream: { state: string, url: string, lastError: string | null, lastOkAt: number | null, mqtt?: MqttUpstreamStatus }
  clients: { connected: number }
  /** publishes on topics that store nothing (broker/unmapped.ts) */
  unstoredPublishes?: UnstoredStatus
  /** commands to devices (gateway/commands/): absent when they are off */
  commands?: LiveCommands
}

/** The commands core's figures (`GatewayCommands.status()`). */
export type LiveCommands = {
  held: number
  byState: Record<string, number>
  reportsPending: number
  link: { state: string, url: string, lastError: string | null, lastOkAt: number | null }
}

/** Topics a sample carries for the page's "publishes on topics that store nothing" table. */
const UNSTORED_TOPICS_SHOWN = 10

export type Sample = {
  t: number
  gateway: string
  epoch: string
  ready: boolean
  /** why the gateway is unready or cannot take readings; empty when all is well */
  banner: string[]
  /** ready, but with something an operator should know (no upstream: intake only) */
  notices: string[]
  /** readings/s received on devices/+/readings (all outcomes), stored (new) of them */
  inPerS: number
  storedPerS: number
  /** items/s acknowledged upstream (stored + duplicate), rejected upstream */
  uploadedPerS: number
  rejectedPerS: number
  /** PUBACK latency over the interval, ms; null when no PUBACK was sent */
  p50Ms: number | null
  p99Ms: number | null
  buffered: number
  bufferedBytes: number
  /** per partition: [depth, oldest unacked age ms or null] */
  partitions: [number, number | null][]
  upstream: LiveStatus['upstream']
  dlq: { items: number, invalid: number, tooOld: number, rejected: number }
  clients: number
  /** publishes on topics that store nothing since start: total, refused, and the busiest topics as [topic, publishes, last client id] */
  unstored: { publishes: number, refused: number, policy: string, topics: [string, number, string][] }
  /** commands held here by state, reports pending upstream and the command link; null when commands are off */
  commands: LiveCommands | null
}

type Totals = { received: number, stored: number, uploaded: number, rejected: number, invalid: number, tooOld: number, buckets: number[] }

async function byLabel (c: Counter<string>, label: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const v of (await c.get()).values) out[String(v.labels[label])] = v.value
  return out
}

async function buckets (h: Histogram): Promise<{ le: number[], counts: number[] }> {
  const le: number[] = []
  const counts: number[] = []
  for (const v of (await h.get()).values) {
    if (!v.metricName?.endsWith('_bucket')) continue
    le.push(v.labels.le === '+Inf' ? Infinity : Number(v.labels.le))
    counts.push(v.value)
  }
  return { le, counts }
}

/** The q-quantile of cumulative bucket counts `cum` with upper bounds `le` (ms out). */
export function quantile (q: number, le: number[], cum: number[]): number | null {
  const total = cum[cum.length - 1] ?? 0
  if (total <= 0) return null
  const rank = q * total
  for (let i = 0; i < cum.length; i++) {
    if (cum[i]! >= rank) {
      const lo = i === 0 ? 0 : le[i - 1]!
      const hi = le[i]!
      if (!Number.isFinite(hi)) return lo * 1000
      const below = i === 0 ? 0 : cum[i - 1]!
      const inBucket = cum[i]! - below
      const frac = inBucket > 0 ? (rank - below) / inBucket : 1
      return (lo + (hi - lo) * frac) * 1000
    }
  }
  return null
}

export class LiveSampler {
  private readonly history: Sample[] = []
  private prev: Totals | null = null
  private prevAt = 0
  private timer: NodeJS.Timeout | null = null
  private le: number[] = []
  private readonly listeners = new Set<(s: Sample) => void>()

  constructor (private readonly metrics: Metrics, private readonly source: LiveSource) {}

  start (): void {
    if (this.timer) return
    void this.tick()
    this.timer = setInterval(() => { void this.tick() }, SAMPLE_INTERVAL_MS)
    this.timer.unref()
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    this.listeners.clear()
  }

  recent (): Sample[] { return this.history.slice() }
  latest (): Sample | undefined { return this.history[this.history.length - 1] }

  onSample (fn: (s: Sample) => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  private async totals (): Promise<Totals> {
    const intake = await byLabel(this.metrics.intake, 'outcome')
    const up = await byLabel(this.metrics.upstreamItems, 'code')
    const b = await buckets(this.metrics.pubackLatency)
    this.le = b.le
    let received = 0
    for (const v of Object.values(intake)) received += v
    return {
      received,
      stored: intake.stored ?? 0,
      uploaded: (up.stored ?? 0) + (up.duplicate ?? 0),
      rejected: up.rejected ?? 0,
      invalid: intake.invalid ?? 0,
      tooOld: intake.too_old ?? 0,
      buckets: b.counts
    }
  }

  private async tick (): Promise<void> {
    try {
      const now = Date.now()
      const [tot, st] = await Promise.all([this.totals(), this.source.status()])
      const r = this.source.ready()
      const prev = this.prev
      const dt = prev ? Math.max((now - this.prevAt) / 1000, 0.001) : 1
      const rate = (k: 'received' | 'stored' | 'uploaded' | 'rejected'): number => prev ? Math.max(0, Math.round((tot[k] - prev[k]) / dt * 10) / 10) : 0
      const cum = prev ? tot.buckets.map((c, i) => c - (prev.buckets[i] ?? 0)) : tot.buckets.map(() => 0)
      // ready with reasons: notes (no upstream), not alarms
      const banner = r.ready ? [] : [...r.reasons]
      const notices = r.ready ? [...r.reasons] : []
      const un = st.unstoredPublishes
      if (st.bufferFull) banner.push('buffer full: new readings wait for space (fullPolicy=block) and their PUBACKs are held')
      const s: Sample = {
        t: now,
        gateway: st.gateway,
        epoch: st.epoch,
        ready: r.ready && !st.bufferFull,
        banner,
        notices,
        inPerS: rate('received'),
        storedPerS: rate('stored'),
        uploadedPerS: rate('uploaded'),
        rejectedPerS: rate('rejected'),
        p50Ms: round3(quantile(0.5, this.le, cum)),
        p99Ms: round3(quantile(0.99, this.le, cum)),
        buffered: st.buffered.items,
        bufferedBytes: st.buffered.bytes,
        partitions: st.partitions.map((p) => [p.depth, p.oldestAgeMs]),
        upstream: st.upstream,
        dlq: { items: st.dlq.items, invalid: tot.invalid, tooOld: tot.tooOld, rejected: tot.rejected },
        clients: st.clients.connected,
        unstored: { publishes: un?.publishes ?? 0, refused: un?.refused ?? 0, policy: un?.policy ?? 'accept', topics: (un?.topics ?? []).slice(0, UNSTORED_TOPICS_SHOWN).map((x) => [x.topic, x.publishes, x.lastClientId]) },
        commands: st.commands ? { held: st.commands.held, byState: st.commands.byState, reportsPending: st.commands.reportsPending, link: { state: st.commands.link.state, url: st.commands.link.url, lastError: st.commands.link.lastError, lastOkAt: st.commands.link.lastOkAt } } : null
      }
      this.prev = tot
      this.prevAt = now
      this.history.push(s)
      if (this.history.length > HISTORY) this.history.shift()
      for (const fn of this.listeners) fn(s)
    } catch {
      // the store may be closing; the next tick tries again
    }
  }
}

const round3 = (x: number | null): number | null => x === null ? null : Math.round(x * 1000) / 1000
