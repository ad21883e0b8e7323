/**
 * The caller's side of commands: sends commands to the ingest's command API
 * (docs/commands.md, "The caller's API") at a steady rate and follows each to its final
 * state, so the command audit (command-audit.ts) can check every one of them.
 *
 * Three kinds, sent in turn (`kinds`):
 * - `sync`: `POST /v1/devices/{id}/commands?wait=MS`; a 200 is final; a 202 (the wait ran
 *   out) is followed like an async one;
 * - `async`: `POST` without wait (202 queued), then `GET /v1/commands/{id}` every `pollMs`
 *   until its state is final;
 * - `deferred`: `POST` without wait, then nothing: at the end (and every few seconds) the
 *   feed `GET /v1/commands?since=&cursor=` reconciles them.
 *
 * Every POST carries an `Idempotency-Key` (`{runId}-{n}`): a POST that got no answer (a
 * timeout, a reset) is sent again with the same key, which cannot create a second command.
 * Every `idempotencyEvery`-th command is POSTed twice on purpose; the second answer must name
 * the same id (`idempotencyMismatches` otherwise: a failure of the audit).
 *
 * A POST the ingest refused (404 unknown_device: the gateway has not reported the device
 * yet; 429; 409) created nothing: it is counted, not audited. `authorization: Bearer TOKEN`
 * when a command token is given.
 */
import { FINAL_STATES, type CommandState } from '../protocol/commands.ts'

export type CommandKind = 'sync' | 'async' | 'deferred'

/** What `GET /v1/commands/{id}` (and each item of the feed) answers. */
export type CommandView = {
  id: string
  device: string
  name?: string
  args?: unknown
  state: CommandState
  gateway?: string | null
  createdAt?: number
  expiresAt?: number
  result?: unknown
  error?: string
  history?: { state: string, at: number, gateway?: string }[]
}

/** One command the ingest created for this driver. */
export type SentCommand = {
  id: string
  device: string
  name: string
  args: unknown
  kind: CommandKind
  key: string
  /** Local ms when the first POST was sent. */
  sentAt: number
  /** Last state seen (POST answer, GET, feed). */
  state: CommandState
  /** Local ms when a final state was first seen. */
  finalAt: number | null
  /** sync answered 200 within the wait: POST to answer, ms. */
  roundTripMs: number | null
  /** POSTed a second time with the same key and the same body. */
  repeated: boolean
  /** The id the repeated POST answered, when it did. */
  repeatId: string | null
}

export type DriverCounts = {
  /** POSTs started (one per command, retries of the same key not counted). */
  attempted: number
  created: number
  final: number
  /** sync commands answered final (200) within the wait. */
  syncAnswered: number
  /** sync commands whose wait ran out (202), followed like async ones. */
  syncTimedOut: number
  refusedUnknownDevice: number
  refusedRateLimited: number
  refusedOther: number
  /** POSTs sent again with the same Idempotency-Key after no answer. */
  retried: number
  /** POSTs given up after the retries (unknown whether created: their key says). */
  failed: number
  idempotencyRepeats: number
  idempotencyMismatches: number
  /** Commands not sent because no device was online. */
  noDevice: number
  lastError: string | null
}

type Pct = { count: number, p50Ms: number | null, p99Ms: number | null }
export type DriverSummary = { sendingS: number, createdPerS: number, roundTripMs: Pct & { maxMs: number | null }, toFinalMs: Pct, asyncPostMs: Pct }

export type CommandDriverOptions = {
  ingestUrl: string
  token?: string | undefined
  /** Commands per second in total. */
  rate: number
  kinds?: readonly CommandKind[]
  waitMs: number
  ttlMs?: number
  /** Ids a command may go to now (e.g. the online devices). */
  targets: () => readonly string[]
  random?: () => number
  fetch?: typeof fetch
  pollMs?: number
  /** Every n-th command is POSTed a second time with the same key (0 = never). */
  idempotencyEvery?: number
  /** At most this many requests (POSTs and polls) at once. */
  maxInFlight?: number
  /** Chooses name and args (default: a mix of every name the simulator knows). */
  pick?: (random: () => number, n: number) => { name: string, args: unknown }
  runId?: string
  now?: () => number
}

/** The default mix: mostly pings and intervals, some failures and unknown names, a few reboots. */
export function defaultPick (random: () => number): { name: string, args: unknown } {
  const x = random()
  if (x < 0.40) return { name: 'ping', args: null }
  if (x < 0.65) return { name: 'set-interval', args: { seconds: 1 + Math.floor(random() * 3) } }
  if (x < 0.72) return { name: 'set-interval', args: { seconds: 0 } } // rejected by the device
  if (x < 0.82) return { name: 'fail', args: null }
  if (x < 0.92) return { name: 'no-such-command', args: { x: 1 } }
  return { name: 'reboot', args: null }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
export const isFinal = (s: unknown): boolean => FINAL_STATES.has(s as CommandState)

/** status 0: no answer (`error` says why). */
type PostResult = { status: number, body: Record<string, unknown> | null, retryAfterS?: number, error?: string }

export class CommandDriver {
  readonly sent: SentCommand[] = []
  readonly byId = new Map<string, SentCommand>()
  readonly counts: DriverCounts = { attempted: 0, created: 0, final: 0, syncAnswered: 0, syncTimedOut: 0, refusedUnknownDevice: 0, refusedRateLimited: 0, refusedOther: 0, retried: 0, failed: 0, idempotencyRepeats: 0, idempotencyMismatches: 0, noDevice: 0, lastError: null }
  private readonly o: Required<Omit<CommandDriverOptions, 'token'>> & { token?: string | undefined }
  private readonly base: string
  private timer: NodeJS.Timeout | null = null
  private startedAt = 0
  private n = 0
  private inFlight = 0
  private readonly pending = new Set<Promise<void>>()
  private pausedUntil = 0
  private stopped = false
  /** Wall ms the run started (the feed's `since`). */
  private sinceWall = 0

  constructor (opts: CommandDriverOptions) {
    this.o = {
      kinds: ['sync', 'async', 'deferred'],
      ttlMs: 60_000,
      random: Math.random,
      fetch: globalThis.fetch,
      pollMs: 250,
      idempotencyEvery: 20,
      maxInFlight: 256,
      pick: defaultPick,
      runId: `r${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`,
      now: () => performance.now(),
      ...opts
    }
    this.base = opts.ingestUrl.replace(/\/+$/, '')
  }

  /** Commands created and not final yet. */
  get open (): number { return this.counts.created - this.counts.final }

  start (): void {
    if (this.timer || this.o.rate <= 0) return
    this.startedAt = this.o.now()
    this.sinceWall = Date.now() - 1000
    const tickMs = Math.max(10, Math.min(100, 1000 / this.o.rate))
    this.timer = setInterval(() => this.tick(), tickMs)
  }

  /** Open loop: as many as the rate says by now, bounded by maxInFlight. */
  private tick (): void {
    if (this.stopped) return
    const now = this.o.now()
    if (now < this.pausedUntil) return
    const due = Math.floor((now - this.startedAt) * this.o.rate / 1000)
    while (this.n < due && this.inFlight < this.o.maxInFlight) {
      const targets = this.o.targets()
      if (targets.length === 0) { this.counts.noDevice += due - this.n; this.n = due; return }
      const device = targets[Math.floor(this.o.random() * targets.length)]!
      const kind = this.o.kinds[this.n % this.o.kinds.length]!
      const { name, args } = this.o.pick(this.o.random, this.n)
      this.track(this.sendOne(device, name, args, kind, this.n))
      this.n++
    }
    // behind by more than a second of commands (the ingest is slower): do not pile up
    if (due - this.n > this.o.rate) this.n = due - Math.ceil(this.o.rate)
  }

  private track (p: Promise<void>): void {
    this.pending.add(p)
    void p.finally(() => this.pending.delete(p))
  }

  private headers (key?: string): Record<string, string> {
    const h: Record<string, string> = { 'content-type': 'application/json' }
    if (this.o.token !== undefined) h.authorization = `Bearer ${this.o.token}`
    if (key !== undefined) h['idempotency-key'] = key
    return h
  }

  private async request (method: string, url: string, body?: string, key?: string, timeoutMs = 15_000): Promise<PostResult> {
    this.inFlight++
    try {
      const res = await this.o.fetch(url, { method, headers: this.headers(key), ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(timeoutMs) })
      const text = await res.text()
      let parsed: Record<string, unknown> | null = null
      try { parsed = JSON.parse(text) as Record<string, unknown> } catch {}
      const ra = Number(res.headers.get('retry-after'))
      return { status: res.status, body: parsed, ...(Number.isFinite(ra) && ra > 0 ? { retryAfterS: ra } : {}) }
    } catch (err) {
      return { status: 0, body: null, error: (err as Error).message }
    } finally {
      this.inFlight--
    }
  }

  /** Sends one command; retries a POST without an answer under the same key. */
  async sendOne (device: string, name: string, args: unknown, kind: CommandKind, n: number): Promise<void> {
    this.counts.attempted++
    const key = `${this.o.runId}-${n}`
    const body = JSON.stringify({ name, args, ttlMs: this.o.ttlMs })
    const url = `${this.base}/v1/devices/${encodeURIComponent(device)}/commands${kind === 'sync' ? `?wait=${this.o.waitMs}` : ''}`
    const t0 = this.o.now()
    let r: PostResult | null = null
    for (let attempt = 0; attempt < 4; attempt++) {
      if (attempt > 0) { this.counts.retried++; await sleep(200 * attempt) }
      r = await this.request('POST', url, body, key, (kind === 'sync' ? this.o.waitMs : 0) + 15_000)
      if (r.status !== 0 && r.status < 500) break
    }
    if (r === null || r.status === 0 || r.status >= 500) {
      this.counts.failed++
      this.counts.lastError = r?.error ?? `HTTP ${r?.status}`
      return
    }
    if (r.status === 429) {
      this.counts.refusedRateLimited++
      this.pausedUntil = Math.max(this.pausedUntil, this.o.now() + 1000 * (r.retryAfterS ?? 1))
      return
    }
    if (r.status !== 200 && r.status !== 202) {
      if (r.status === 404) this.counts.refusedUnknownDevice++
      else { this.counts.refusedOther++; this.counts.lastError = `POST ${url}: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 200)}` }
      return
    }
    const b = r.body ?? {}
    if (typeof b.id !== 'string') { this.counts.refusedOther++; this.counts.lastError = `POST ${url}: ${r.status} without an id`; return }
    if (kind !== 'sync') this.postMs.push(this.o.now() - t0)
    const cmd: SentCommand = { id: b.id, device, name, args, kind, key, sentAt: t0, state: (b.state as CommandState) ?? 'queued', finalAt: null, roundTripMs: null, repeated: false, repeatId: null }
    if (this.byId.has(cmd.id)) return // cannot happen with distinct keys; the audit counts ids once
    this.sent.push(cmd)
    this.byId.set(cmd.id, cmd)
    this.counts.created++
    if (kind === 'sync') {
      if (r.status === 200 && isFinal(cmd.state)) { this.counts.syncAnswered++; cmd.roundTripMs = this.o.now() - t0 } else this.counts.syncTimedOut++
    }
    this.see(cmd, b as CommandView)
    if (this.o.idempotencyEvery > 0 && n % this.o.idempotencyEvery === 0) {
      // the repeat is retried like the first POST: only an answer that names an id says anything
      let again: PostResult | null = null
      for (let attempt = 0; attempt < 4; attempt++) {
        if (attempt > 0) await sleep(again?.retryAfterS !== undefined ? again.retryAfterS * 1000 : 200 * attempt)
        again = await this.request('POST', `${this.base}/v1/devices/${encodeURIComponent(device)}/commands`, body, key)
        if (typeof again.body?.id === 'string') break
      }
      this.counts.idempotencyRepeats++
      const repeatId = typeof again?.body?.id === 'string' ? again.body.id : null
      if (repeatId === null) {
        // no answer with an id after the retries: nothing to compare (not counted as a mismatch)
        this.counts.lastError = `repeated POST ${key}: ${again?.status ?? 0} ${again?.error ?? JSON.stringify(again?.body ?? null).slice(0, 200)}`
      } else {
        cmd.repeated = true
        cmd.repeatId = repeatId
        if (repeatId !== cmd.id) this.counts.idempotencyMismatches++
      }
    }
    if (kind !== 'deferred') await this.follow(cmd)
  }

  private see (cmd: SentCommand, v: CommandView): void {
    if (typeof v.state !== 'string') return
    cmd.state = v.state
    if (isFinal(v.state) && cmd.finalAt === null) { cmd.finalAt = this.o.now(); this.counts.final++ }
  }

  /** Polls GET /v1/commands/{id} until final (or the driver is finishing and time is up). */
  private async follow (cmd: SentCommand, deadline = Infinity): Promise<void> {
    while (cmd.finalAt === null && this.o.now() < deadline) {
      await sleep(this.o.pollMs)
      const r = await this.request('GET', `${this.base}/v1/commands/${encodeURIComponent(cmd.id)}`)
      if (r.status === 200 && r.body) this.see(cmd, r.body as CommandView)
      if (this.stopped && this.o.now() >= this.finishDeadline) return
    }
  }

  private finishDeadline = Infinity

  /** One pass over the feed from the run's start; returns the views it read. */
  async reconcile (): Promise<number> {
    let since = this.sinceWall
    let cursor: string | null = null
    let seen = 0
    for (let page = 0; page < 10_000; page++) {
      const q: string = `since=${since}&limit=500${cursor !== null ? `&cursor=${encodeURIComponent(cursor)}` : ''}`
      const r = await this.request('GET', `${this.base}/v1/commands?${q}`)
      if (r.status !== 200 || !r.body || !Array.isArray(r.body.commands)) {
        this.counts.lastError = `GET /v1/commands?${q}: ${r.error ?? `HTTP ${r.status}`}`
        return seen
      }
      for (const v of r.body.commands as CommandView[]) {
        seen++
        const cmd = this.byId.get(v.id)
        if (cmd) this.see(cmd, v)
      }
      const next = r.body.next
      if (next === null || next === undefined || next === '') return seen
      cursor = String(next)
      since = this.sinceWall
    }
    return seen
  }

  /** Stops sending new commands (what is in flight goes on). */
  stop (): void {
    if (this.timer) { clearInterval(this.timer); this.stoppedAt = this.o.now() }
    this.timer = null
  }

  private stoppedAt: number | null = null
  /** POST to 202 of the async and deferred commands (ms). */
  private readonly postMs: number[] = []

  /**
   * Stops sending, waits for the POSTs in flight, then (bounded by timeoutMs) until every
   * created command is final: the feed every second, and a GET per command still open.
   * Resolves with the number still not final.
   */
  async finish (timeoutMs: number): Promise<number> {
    this.stop()
    const deadline = this.o.now() + timeoutMs
    this.finishDeadline = deadline
    this.stopped = true
    await Promise.race([Promise.allSettled([...this.pending]), sleep(timeoutMs)])
    while (this.open > 0 && this.o.now() < deadline) {
      await this.reconcile()
      if (this.open === 0) break
      const openOnes = this.sent.filter((c) => c.finalAt === null)
      // the feed may lag or page differently: ask each open one directly, a few at a time
      for (let i = 0; i < openOnes.length && this.o.now() < deadline; i += 16) {
        await Promise.all(openOnes.slice(i, i + 16).map(async (c) => {
          const r = await this.request('GET', `${this.base}/v1/commands/${encodeURIComponent(c.id)}`)
          if (r.status === 200 && r.body) this.see(c, r.body as CommandView)
        }))
      }
      if (this.open > 0) await sleep(1000)
    }
    return this.open
  }

  /** The live view's line. */
  line (): string {
    const c = this.counts
    const refused = c.refusedUnknownDevice + c.refusedRateLimited + c.refusedOther
    return `commands sent ${c.created}  final ${c.final}  open ${this.open}  sync answered ${c.syncAnswered} (wait ran out ${c.syncTimedOut})  refused ${refused}  failed ${c.failed}${c.lastError ? `  last error: ${c.lastError.slice(0, 80)}` : ''}`
  }

  /**
   * For reports and benches: the sending window, commands created per second in it, the
   * round trip of the sync commands answered within their wait, and POST to final state of
   * the followed ones (sync and async; polled every pollMs, so that coarse).
   */
  summary (): DriverSummary {
    const pct = (a: number[], q: number): number | null => a.length === 0 ? null : Math.round(a[Math.min(a.length - 1, Math.floor(q * a.length))]! * 10) / 10
    const rt = this.roundTrips()
    const followed = this.sent.filter((c) => c.kind !== 'deferred' && c.finalAt !== null).map((c) => c.finalAt! - c.sentAt).sort((a, b) => a - b)
    const sendingS = ((this.stoppedAt ?? this.o.now()) - this.startedAt) / 1000
    return {
      sendingS: Math.round(sendingS * 100) / 100,
      createdPerS: sendingS > 0 ? Math.round(this.counts.created / sendingS * 10) / 10 : 0,
      roundTripMs: { count: rt.length, p50Ms: pct(rt, 0.5), p99Ms: pct(rt, 0.99), maxMs: rt.length ? Math.round(rt.at(-1)! * 10) / 10 : null },
      toFinalMs: { count: followed.length, p50Ms: pct(followed, 0.5), p99Ms: pct(followed, 0.99) },
      asyncPostMs: (() => { const a = this.postMs.slice().sort((x, y) => x - y); return { count: a.length, p50Ms: pct(a, 0.5), p99Ms: pct(a, 0.99) } })()
    }
  }

  /** Round trip of the sync commands answered in time, sorted (ms). */
  roundTrips (): number[] {
    return this.sent.filter((c) => c.roundTripMs !== null).map((c) => c.roundTripMs!).sort((a, b) => a - b)
  }
}
