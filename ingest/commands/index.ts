/**
 * Commands to devices at the ingest (docs/commands.md): the state machine, routing by
 * presence and the limits, over a CommandStore (store.ts). Transport-free: the HTTP routes
 * (http.ts) and the MQTT side (mqtt.ts) call it, and it refuses with a `CommandRefusal`
 * (../refusal.ts: what went wrong in words, the field or limit, when to retry), which
 * http.ts turns into its status.
 *
 * Every decision is a read-modify-write through `store.update`, so two reports of one
 * command (two gateways, two ingest processes on one PostgreSQL) never both win: the first
 * final state recorded stays.
 *
 * Expiry: a timer (every `sweepMs`) records `expired` for `queued` commands whose
 * `expiresAt` passed (no gateway took them, none will deliver them). A command a gateway
 * holds (`at-gateway`, `delivered`) is the gateway's to expire (it never delivers after
 * `expiresAt` and reports `expired`); only when the gateway has said nothing by `expiresAt +
 * expiryGraceMs` does the ingest record `expired` itself, so a gateway cut off for good does
 * not leave the command open for ever. A device answer relayed later is then `duplicate`.
 *
 * Waiters: `wait(id)` wakes on an in-process event per command id, and re-reads the store
 * every 250 ms so that a command completed through another ingest process on a shared
 * database is seen too; it ends at once when its signal aborts (the caller went away: the
 * command stays, only the waiter goes). Long polls (`waitPending`) wake on an in-process
 * event per gateway and re-read every second; they too end at once when their signal aborts
 * (the gateway hung up).
 */
import { createHash, randomBytes } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { Logger } from 'pino'
import { isFinalState, MAX_ERROR_CHARS, COMMAND_NAME_RE, type CommandState, type Recall, type ReportResult, type ReportsRequest, type WireCommand } from '../../protocol/commands.ts'
import { DEVICE_ID_RE } from '../../protocol/topics.ts'
import { CommandRefusal } from '../refusal.ts'
import type { CommandPage, CommandRecord, CommandStore, PresenceEntry } from './store.ts'

export type { CommandRecord, CommandStore } from './store.ts'

export type CommandsOptions = {
  /** default TTL of a command */
  ttlMs: number
  maxTtlMs: number
  maxWaitMs: number
  maxArgsBytes: number
  maxPendingPerDevice: number
  /** commands per second per token; the bucket holds twice as many */
  rate: number
  presenceTtlMs: number
  /** how long after expiresAt the ingest waits for the holding gateway's word before recording `expired` itself */
  expiryGraceMs: number
  /** period of the expiry sweep */
  sweepMs?: number
  /** about the most bytes of commands one CommandsMessage carries (default 2 MiB, half the gateway's decode limit); the rest go in the next */
  maxMessageBytes?: number
  now?: () => number
}

/** Counters the state machine moves (metrics.ts binds them; tests may leave them out). */
export type CommandsHooks = {
  log?: Logger
  transition?: (state: CommandState) => void
  report?: (code: number) => void
  /** a refused create, by the refusal's `errorCode` */
  refusal?: (reason: string) => void
}

/** The caller's request body, as parsed JSON. */
export type CreateBody = { name: string, args?: unknown, ttlMs?: number }

export type CreateOptions = {
  /** fleet of the caller's command token (not `*`: a command belongs to one fleet) */
  fleet: string
  /** identifies the caller for the rate limit (the token's hash) */
  caller: string
  idempotencyKey?: string
  offlineFail?: boolean
}

/**
 * What a cancel did (`Commands.cancel`), in the words of the command's fate: `cancelled` (it
 * was queued and is final now), `requested` (a gateway holds it: asked to give it back),
 * `already-requested` (asked before; nothing changed). The HTTP front picks the status.
 */
export const CANCEL_OUTCOMES = ['cancelled', 'requested', 'already-requested'] as const

export type CancelOutcome = typeof CANCEL_OUTCOMES[number]

/** A gateway's pending work: what the long poll and the MQTT publish carry. */
export type Pending = { commands: WireCommand[], recalls: Recall[] }

const RANK: Record<CommandState, number> = { queued: 0, 'at-gateway': 1, delivered: 2, completed: 3, rejected: 3, expired: 3, cancelled: 3 }
/** open commands of a gateway looked at per poll (held ones included) */
const PENDING_SCAN = 10_000
/** what one wire command costs in a CommandsMessage besides its args and name (ids, numbers, keys) */
const WIRE_OVERHEAD_BYTES = 200
const SWEEP_LIMIT = 1000
/**
 * A long poll answers at once only when it has a command (or recall) it did not offer within
 * this long: one stays pending until the gateway's at-gateway (recalled) report is applied,
 * and without this the gateway's next poll would get it again at once (a busy loop of polls
 * while its report is on the way). A gateway that did not store it (restart, write failure)
 * gets it again after at most this long.
 */
export const REOFFER_MS = 3000
/** How often `wait` re-reads the store (a command finished through another ingest process). */
export const WAIT_REREAD_MS = 250
/**
 * How often a long poll re-reads the gateway's pending work with no event: a command routed
 * to it by another ingest process on a shared database, or one offered REOFFER_MS ago and
 * still not reported at-gateway.
 */
export const POLL_REREAD_MS = 1000

/** `recent`: the windows tried, longest first, the page size and the most pages read of the shortest. */
const RECENT_WINDOWS_MS = [600_000, 60_000, 10_000] as const
const RECENT_PAGE = 500
const RECENT_PAGES = 4

const APPLIED = 0
const DUPLICATE = 1
const REJECTED = 3

function bad (field: string, message: string): CommandRefusal {
  return new CommandRefusal('invalid', 'invalid_command', `${field}: ${message}`, { field })
}

/** A token bucket per caller: `rate` per second, `2 * rate` at most. */
class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number, at: number }>()
  constructor (private readonly rate: number, private readonly now: () => number) {}
  /** 0 when allowed, else the ms until one token is there. */
  take (caller: string): number {
    const now = this.now()
    const burst = 2 * this.rate
    const b = this.buckets.get(caller) ?? { tokens: burst, at: now }
    b.tokens = Math.min(burst, b.tokens + (now - b.at) * this.rate / 1000)
    b.at = now
    this.buckets.set(caller, b)
    if (this.buckets.size > 10_000) for (const [k, v] of this.buckets) { if (v.tokens >= burst) this.buckets.delete(k) }
    if (b.tokens >= 1) { b.tokens -= 1; return 0 }
    return Math.ceil((1 - b.tokens) * 1000 / this.rate)
  }
}

export function newCommandId (now: number): string {
  return `c${now.toString(36)}${randomBytes(8).toString('hex')}`
}

export function fingerprint (device: string, name: string, args: unknown, ttlMs: number): string {
  return createHash('sha256').update(JSON.stringify([device, name, args ?? null, ttlMs])).digest('hex')
}

const toWire = (r: CommandRecord): WireCommand => ({ id: r.id, device: r.device, n: r.n, name: r.name, args: r.args, createdAt: r.createdAt, expiresAt: r.expiresAt })

/** The gateway a command of this device goes to: connected there most recently, else where last heard of; null if none. */
export function routeOf (presence: readonly PresenceEntry[]): string | null {
  let best: PresenceEntry | null = null
  for (const p of presence) {
    if (best === null || (p.connected && !best.connected) || (p.connected === best.connected && p.at > best.at)) best = p
  }
  return best?.gateway ?? null
}

export class Commands {
  private readonly events = new EventEmitter()
  private readonly limiter: RateLimiter
  private readonly now: () => number
  private readonly timer: NodeJS.Timeout
  private sweeping: Promise<void> | null = null
  private closed = false
  private waiting = 0
  private polling = 0
  /** per (fleet, device): creates one at a time, so the pending limit holds */
  private readonly deviceLocks = new Map<string, Promise<unknown>>()
  /** per gateway: what its long polls offered, and when (not offered again within REOFFER_MS) */
  private readonly offered = new Map<string, Map<string, number>>()

  constructor (readonly store: CommandStore, readonly opts: CommandsOptions, private readonly hooks: CommandsHooks = {}) {
    this.events.setMaxListeners(0)
    this.now = opts.now ?? Date.now
    this.limiter = new RateLimiter(opts.rate, this.now)
    this.timer = setInterval(() => { void this.sweep() }, opts.sweepMs ?? 1000)
    this.timer.unref()
  }

  // ---- the caller's side ------------------------------------------------------------

  /** Validates, routes and stores a command; `created: false` for a repeated Idempotency-Key. */
  async create (device: string, body: unknown, o: CreateOptions): Promise<{ record: CommandRecord, created: boolean }> {
    const refuse = (e: CommandRefusal): never => { this.hooks.refusal?.(e.errorCode); throw e }
    const wait = this.limiter.take(o.caller)
    if (wait > 0) refuse(new CommandRefusal('rate-limited', 'rate_limited', `more than ${this.opts.rate} commands per second (--command-rate) with this token`, { field: 'rate', retryAfterMs: wait }))
    if (!DEVICE_ID_RE.test(device)) refuse(bad('device', `must match ${DEVICE_ID_RE}`))
    if (body === null || typeof body !== 'object' || Array.isArray(body)) refuse(bad('body', 'must be a JSON object { name, args?, ttlMs? }'))
    const b = body as Record<string, unknown>
    for (const k of Object.keys(b)) if (!['name', 'args', 'ttlMs'].includes(k)) refuse(bad(k, 'unknown field (name, args, ttlMs)'))
    if (typeof b.name !== 'string' || !COMMAND_NAME_RE.test(b.name)) refuse(bad('name', `must be text matching ${COMMAND_NAME_RE}`))
    const ttlMs = b.ttlMs ?? this.opts.ttlMs
    if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < 1) refuse(bad('ttlMs', 'must be a positive integer (ms)'))
    if ((ttlMs as number) > this.opts.maxTtlMs) refuse(bad('ttlMs', `must be at most ${this.opts.maxTtlMs} (--command-max-ttl-ms)`))
    const args = b.args ?? null
    const argsBytes = Buffer.byteLength(JSON.stringify(args))
    if (argsBytes > this.opts.maxArgsBytes) refuse(new CommandRefusal('too-large', 'args_too_large', `args: ${argsBytes} bytes JSON-encoded, more than ${this.opts.maxArgsBytes} (--command-max-args-bytes)`, { field: 'args' }))
    if (o.idempotencyKey !== undefined && !/^[\x21-\x7e]{1,128}$/.test(o.idempotencyKey)) refuse(bad('idempotency-key', 'must be 1..128 visible ASCII characters'))
    const name = b.name as string
    const fp = fingerprint(device, name, args, ttlMs as number)
    return await this.withDeviceLock(`${o.fleet}\x00${device}`, async () => {
      const now = this.now()
      const open = await this.store.openForDevice(o.fleet, device)
      if (o.idempotencyKey !== undefined) {
        const same = open.find((r) => r.idempotencyKey === o.idempotencyKey)
        if (same) return this.repeated(same, fp)
      }
      const presence = await this.store.presenceOf(o.fleet, device)
      const gateway = routeOf(presence)
      if (gateway === null) refuse(new CommandRefusal('unknown', 'unknown_device', `no gateway of fleet ${o.fleet} has reported device ${device}`, { field: 'device' }))
      if (o.offlineFail === true && !presence.some((p) => p.connected && p.seenAt >= now - this.opts.presenceTtlMs)) {
        refuse(new CommandRefusal('conflict', 'device_offline', `no gateway of fleet ${o.fleet} reports device ${device} connected now (offline=fail)`, { field: 'offline' }))
      }
      if (open.length >= this.opts.maxPendingPerDevice) refuse(new CommandRefusal('too-many-pending', 'too_many_pending', `device ${device} has ${open.length} open commands, the limit (--command-max-pending-per-device) is ${this.opts.maxPendingPerDevice}`, { field: 'device' }))
      const { record, created } = await this.store.create({
        id: newCommandId(now),
        fleet: o.fleet,
        device,
        name,
        args,
        createdAt: now,
        expiresAt: now + (ttlMs as number),
        state: 'queued',
        gateway,
        recall: null,
        history: [{ state: 'queued', at: now }],
        ...(o.idempotencyKey !== undefined ? { idempotencyKey: o.idempotencyKey, fingerprint: fp } : {})
      })
      if (!created) return this.repeated(record, fp)
      this.hooks.transition?.('queued')
      this.wakeGateway(gateway!)
      return { record, created: true }
    })
  }

  private repeated (r: CommandRecord, fp: string): { record: CommandRecord, created: false } {
    if (r.fingerprint !== fp) {
      this.hooks.refusal?.('idempotency_key_reused')
      throw new CommandRefusal('key-reused', 'idempotency_key_reused', `Idempotency-Key was used for another request (command ${r.id}: another device, name, args or ttlMs)`, { field: 'idempotency-key' })
    }
    return { record: r, created: false }
  }

  private async withDeviceLock<T> (k: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.deviceLocks.get(k) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    this.deviceLocks.set(k, tail)
    void tail.then(() => { if (this.deviceLocks.get(k) === tail) this.deviceLocks.delete(k) })
    return await run
  }

  /** The command if `fleet` (`*`: any) may see it, else null. */
  async get (id: string, fleet: string): Promise<CommandRecord | null> {
    const r = await this.store.get(id)
    return r !== null && (fleet === '*' || r.fleet === fleet) ? r : null
  }

  async list (fleet: string, q: { device?: string, state?: CommandState, since?: number, cursor?: string, limit: number }): Promise<CommandPage> {
    return await this.store.list({ ...q, ...(fleet === '*' ? {} : { fleet }) })
  }

  /**
   * The `limit` most recently changed commands of `fleet` (`*`: any), newest first, for the
   * ingest page. The feed pages oldest first, so this reads the changes of a recent window
   * to its end: the last 10 minutes, or, when they hold more than RECENT_PAGE changes, the
   * last minute, then the last 10 s (then at most RECENT_PAGES pages of it). Bounded: at most
   * a few pages of RECENT_PAGE records per call, whatever the store holds. `windowMs`: the
   * window the commands come from (none changed earlier than now - windowMs is listed).
   */
  async recent (fleet: string, limit = 50): Promise<{ windowMs: number, commands: CommandRecord[] }> {
    const n = Math.max(1, Math.min(Math.floor(limit) || 50, 500))
    const now = this.now()
    for (const windowMs of RECENT_WINDOWS_MS) {
      const last = windowMs === RECENT_WINDOWS_MS[RECENT_WINDOWS_MS.length - 1]
      let page = await this.list(fleet, { since: now - windowMs, limit: RECENT_PAGE })
      if (page.next !== null && !last) continue // too many in this window: a shorter one
      let tail = page.commands.slice(-n)
      for (let i = 1; page.next !== null && i < RECENT_PAGES; i++) {
        page = await this.list(fleet, { since: now - windowMs, cursor: page.next, limit: RECENT_PAGE })
        tail = [...tail, ...page.commands].slice(-n)
      }
      return { windowMs, commands: tail.reverse() }
    }
    return { windowMs: 0, commands: [] }
  }

  /**
   * Waits up to `ms` for the command to reach a final state; resolves with the record as it
   * is then (null for an unknown id; the caller checked its fleet when it made or read it).
   * `signal`: the caller is gone (its connection closed); the wait ends at once, with the
   * record as last read, and the command is untouched.
   */
  async wait (id: string, ms: number, signal?: AbortSignal): Promise<CommandRecord | null> {
    const deadline = this.now() + Math.min(ms, this.opts.maxWaitMs)
    const gone = (): boolean => signal?.aborted === true
    this.waiting++
    try {
      for (;;) {
        const r = await this.store.get(id)
        if (r === null || isFinalState(r.state) || this.closed || gone()) return r
        const left = deadline - this.now()
        if (left <= 0) return r
        await this.once(`c:${id}`, Math.min(left, WAIT_REREAD_MS), signal)
        if (gone()) return r
      }
    } finally {
      this.waiting--
    }
  }

  /** Calls of `wait` not yet ended: the POSTs with `?wait` waiting for their command now. */
  get waiters (): number {
    return this.waiting
  }

  /**
   * Cancels a command: `cancelled` when it was queued (final now); `requested` when a gateway
   * holds it (at-gateway: a cancel recall asked of it, cancelled when it gives the command
   * back, or it goes on if the device got it first); `already-requested` when such a recall
   * was asked before (nothing changes). Any other state is a `conflict` refusal naming it.
   */
  async cancel (id: string, fleet: string): Promise<{ outcome: CancelOutcome, record: CommandRecord }> {
    if (await this.get(id, fleet) === null) throw new CommandRefusal('unknown', 'not_found', `no command ${id}`, { field: 'id' })
    const now = this.now()
    // set by `change` (the `as` keeps TypeScript from narrowing it to its first value)
    let outcome = 'cancelled' as CancelOutcome | CommandRefusal
    const [r] = await this.store.update([id], ([cur]) => {
      if (!cur) { outcome = new CommandRefusal('unknown', 'not_found', `no command ${id}`, { field: 'id' }); return [null] }
      if (cur.state === 'queued') { outcome = 'cancelled'; return [this.moveTo(cur, 'cancelled', now, now)] }
      if (cur.state === 'at-gateway') {
        if (cur.recall === 'cancel') { outcome = 'already-requested'; return [null] }
        outcome = 'requested'
        return [{ ...cur, recall: 'cancel', updatedAt: now }]
      }
      outcome = new CommandRefusal('conflict', 'not_cancellable', `command ${id} is ${cur.state}: only a queued or at-gateway command can be cancelled`, { field: 'state' })
      return [null]
    })
    if (outcome instanceof CommandRefusal) throw outcome
    if (outcome === 'cancelled') this.notify(r!)
    else if (r!.gateway !== null) this.wakeGateway(r!.gateway)
    return { outcome, record: r! }
  }

  // ---- the gateway's side -----------------------------------------------------------

  /** Commands routed to `gateway` that it has not reported at-gateway, and its recalls. */
  async pendingFor (gateway: string): Promise<Pending> {
    const now = this.now()
    const open = await this.store.openForGateway(gateway, PENDING_SCAN)
    const commands: WireCommand[] = []
    const recalls: Recall[] = []
    // the message must stay under the gateway's decode limit: what does not fit goes in the next one
    // (in n order: once one does not fit, no later one goes before it)
    let budget = this.opts.maxMessageBytes ?? 2 * 1024 * 1024
    let full = false
    for (const r of open) {
      if (r.state === 'queued' && r.expiresAt > now) {
        const size = WIRE_OVERHEAD_BYTES + r.name.length + Buffer.byteLength(JSON.stringify(r.args ?? null))
        if (full || (size > budget && commands.length > 0)) { full = true; continue }
        budget -= size
        commands.push(toWire(r))
      } else if (r.state === 'at-gateway' && r.recall !== null) {
        budget -= WIRE_OVERHEAD_BYTES
        recalls.push({ id: r.id, device: r.device, cancel: r.recall === 'cancel' })
      }
    }
    return { commands, recalls }
  }

  /**
   * The long poll: pending work at once if any, else when some arrives or `ms` runs out.
   * Touches the gateway's seenAt. `signal`: the gateway hung up (its connection closed); the
   * poll ends at once, and what it read is not noted as offered (nobody got it: the gateway's
   * next poll has it at once).
   */
  async waitPending (gateway: string, ms: number, signal?: AbortSignal): Promise<Pending> {
    const gone = (): boolean => signal?.aborted === true
    this.polling++
    try {
      await this.store.touchGateway(gateway, this.now())
      const deadline = this.now() + ms
      for (;;) {
        const p = await this.pendingFor(gateway)
        if (gone()) return p
        const left = deadline - this.now()
        if (this.anythingNew(gateway, p) || left <= 0 || this.closed) return p
        await this.once(`g:${gateway}`, Math.min(left, POLL_REREAD_MS), signal)
        if (gone()) return p
      }
    } finally {
      this.polling--
    }
  }

  /** Calls of `waitPending` not yet ended: the gateways' long polls waiting now. */
  get pollers (): number {
    return this.polling
  }

  /**
   * True when `p` holds a command or recall no poll of `gateway` offered within REOFFER_MS
   * (noted as offered now). The poll then answers with all of `p` (the gateway ignores the
   * ones it holds, and gets each device's commands in n order); otherwise it waits.
   */
  private anythingNew (gateway: string, p: Pending): boolean {
    const now = this.now()
    let seen = this.offered.get(gateway)
    if (!seen) { seen = new Map(); this.offered.set(gateway, seen) }
    for (const [k, at] of seen) if (now - at >= REOFFER_MS) seen.delete(k)
    let fresh = false
    const note = (k: string): void => { if (!seen.has(k)) { seen.set(k, now); fresh = true } }
    for (const c of p.commands) note(`c${c.id}`)
    for (const r of p.recalls) note(`r${r.id}`)
    return fresh
  }

  /** Subscribes to "this gateway may have new pending work" (mqtt.ts publishes then). */
  onWake (fn: (gateway: string) => void): () => void {
    this.events.on('wake', fn)
    return () => { this.events.off('wake', fn) }
  }

  /** Applies a gateway's presence then its reports; one result per report, in order. */
  async applyReports (gateway: string, fleet: string, req: Pick<ReportsRequest, 'reports' | 'presence' | 'snapshot'>): Promise<ReportResult[]> {
    const now = this.now()
    const entries = req.presence.map(([device, connected, at]) => ({ device, connected: connected === 1, at }))
    // without presence entries (only the gateway's seenAt to write) the presence write and the
    // reports' update go in one group commit; else the presence is durable before anything
    // reads it (re-routes). The answer waits for both to be durable.
    const presenceStored = this.store.setPresence(fleet, gateway, entries, req.snapshot === true, now)
    presenceStored.catch(() => {}) // awaited below
    if (entries.length > 0 || req.snapshot === true) {
      await presenceStored
      await Promise.all([...new Set(entries.filter((e) => e.connected).map((e) => e.device))].map((d) => this.reroute(fleet, d)))
    }
    const results: ReportResult[] = []
    const ids = [...new Set(req.reports.map((r) => r[0]))]
    const verdicts = new Map<number, ReportResult>()
    const touched = new Set<string>()
    const recalledIds = new Set<string>()
    // presence of recalled commands' devices, read before the transaction (change must be synchronous)
    const routes = new Map<string, string | null>()
    for (const r of req.reports) {
      if (r[2] !== 'recalled') continue
      const k = `${fleet}\x00${r[1]}`
      if (!routes.has(k)) routes.set(k, routeOf(await this.store.presenceOf(fleet, r[1])))
    }
    const stored = ids.length === 0
      ? []
      : await this.store.update(ids, (current) => {
        // a store may run `change` again (a PostgreSQL retry): decide from scratch each time
        verdicts.clear()
        touched.clear()
        recalledIds.clear()
        const recs = new Map<string, CommandRecord | null>(ids.map((id, i) => [id, current[i] ?? null]))
        req.reports.forEach(([id, device, state, at, detail], index) => {
          const cur = recs.get(id) ?? null
          const verdict = (code: number, reason?: string): void => { verdicts.set(index, reason === undefined ? [index, code as 0] : [index, code as 0, reason]) }
          if (cur === null) return verdict(REJECTED, 'unknown command id')
          if (cur.device !== device) return verdict(REJECTED, `command ${id} is for another device`)
          if (cur.fleet !== fleet) return verdict(REJECTED, `command ${id} belongs to another fleet`)
          if (isFinalState(cur.state)) return verdict(DUPLICATE, `already ${cur.state}`)
          if (state === 'recalled') {
            if (cur.state === 'queued') return verdict(DUPLICATE, 'already given back')
            if (cur.state !== 'at-gateway' || cur.gateway !== gateway) return verdict(REJECTED, `command ${id} is ${cur.state}${cur.gateway !== gateway ? ` at gateway ${cur.gateway}` : ''}: it cannot be recalled from ${gateway}`)
            let next: CommandRecord
            if (cur.recall === 'cancel') next = this.moveTo(cur, 'cancelled', at, now, gateway)
            else {
              const to = routes.get(`${fleet}\x00${device}`) ?? cur.gateway
              next = { ...this.moveTo(cur, 'queued', at, now, gateway), gateway: to, recall: null }
            }
            recs.set(id, next)
            touched.add(id)
            recalledIds.add(id)
            return verdict(APPLIED)
          }
          if (RANK[state] <= RANK[cur.state]) {
            if (state === 'at-gateway' && cur.gateway !== gateway) return verdict(REJECTED, `command ${id} is held by gateway ${cur.gateway}`)
            return verdict(DUPLICATE, `already ${cur.state}`)
          }
          const next: CommandRecord = { ...this.moveTo(cur, state, at, now, gateway), gateway }
          if (state === 'delivered' || isFinalState(state)) next.recall = null
          if (state === 'completed') next.result = detail ?? null
          if (state === 'rejected') next.error = (typeof detail === 'string' ? detail : detail === undefined ? '' : JSON.stringify(detail)).slice(0, MAX_ERROR_CHARS)
          recs.set(id, next)
          touched.add(id)
          verdict(APPLIED)
        })
        return ids.map((id) => touched.has(id) ? recs.get(id)! : null)
      })
    for (let i = 0; i < req.reports.length; i++) {
      const v = verdicts.get(i) ?? [i, 2 as const, 'not decided']
      results.push(v)
      this.hooks.report?.(v[1])
    }
    // the transitions, counted once per command as stored (the history says the rest)
    for (const r of stored) {
      if (r === null || !touched.has(r.id)) continue
      this.notify(r)
      if (r.gateway !== null && (recalledIds.has(r.id) || r.recall !== null)) this.wakeGateway(r.gateway)
    }
    for (const [index, code] of results) {
      if (code !== APPLIED) continue
      const rep = req.reports[index]!
      this.hooks.transition?.(rep[2] === 'recalled' ? (stored.find((s) => s?.id === rep[0])?.state ?? 'queued') : rep[2])
    }
    // a device that is at-gateway here and connected elsewhere: recall it now that it is held
    await presenceStored
    await Promise.all([...new Set(req.reports.filter((r) => r[2] === 'at-gateway').map((r) => r[1]))].map((d) => this.reroute(fleet, d)))
    return results
  }

  /**
   * Re-routes a device's open commands to where it is now: queued ones move at once,
   * at-gateway ones held by another gateway get a 'move' recall.
   */
  private async reroute (fleet: string, device: string): Promise<void> {
    const to = routeOf(await this.store.presenceOf(fleet, device))
    if (to === null) return
    const open = (await this.store.openForDevice(fleet, device)).filter((r) => r.gateway !== to && ((r.state === 'queued') || (r.state === 'at-gateway' && r.recall === null)))
    if (open.length === 0) return
    const now = this.now()
    const stored = await this.store.update(open.map((r) => r.id), (current) => current.map((cur) => {
      if (!cur || cur.gateway === to) return null
      if (cur.state === 'queued') return { ...cur, gateway: to, updatedAt: now }
      if (cur.state === 'at-gateway' && cur.recall === null) return { ...cur, recall: 'move', updatedAt: now }
      return null
    }))
    for (const r of stored) if (r?.gateway) this.wakeGateway(r.gateway)
  }

  // ---- expiry -------------------------------------------------------------------------

  /** One pass of the expiry timer; resolves with how many commands it expired. */
  async sweep (): Promise<number> {
    if (this.closed) return 0
    if (this.sweeping) { await this.sweeping; return 0 }
    let n = 0
    this.sweeping = (async () => {
      const now = this.now()
      const late = await this.store.dueForExpiry(now - this.opts.expiryGraceMs, SWEEP_LIMIT)
      const queued = (await this.store.dueForExpiry(now, SWEEP_LIMIT)).filter((r) => r.state === 'queued')
      const ids = [...new Set([...late, ...queued].map((r) => r.id))]
      if (ids.length === 0) return
      const stored = await this.store.update(ids, (current) => current.map((cur) => {
        if (!cur || isFinalState(cur.state) || cur.expiresAt > now) return null
        if (cur.state !== 'queued' && cur.expiresAt > now - this.opts.expiryGraceMs) return null
        return this.moveTo(cur, 'expired', now, now)
      }))
      for (const r of stored) {
        if (r === null || r.state !== 'expired' || r.updatedAt !== now) continue
        n++
        this.hooks.transition?.('expired')
        this.notify(r)
      }
    })().catch((err: unknown) => { this.hooks.log?.warn({ err }, 'command expiry sweep failed') }).finally(() => { this.sweeping = null })
    await this.sweeping
    return n
  }

  // ---- plumbing -----------------------------------------------------------------------

  private moveTo (r: CommandRecord, state: CommandState, at: number, now: number, gateway?: string): CommandRecord {
    return { ...r, state, updatedAt: now, history: [...r.history, { state, at, ...(gateway !== undefined ? { gateway } : {}) }] }
  }

  private notify (r: CommandRecord): void {
    this.events.emit(`c:${r.id}`)
  }

  private wakeGateway (gateway: string): void {
    this.events.emit(`g:${gateway}`)
    this.events.emit('wake', gateway)
  }

  /** Resolves on `event`, on close, when `signal` aborts, or after `ms`, whichever comes first. */
  private once (event: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => { clearTimeout(t); this.events.off(event, done); this.events.off('close', done); signal?.removeEventListener('abort', done); resolve() }
      const t = setTimeout(done, ms)
      this.events.on(event, done)
      this.events.on('close', done)
      signal?.addEventListener('abort', done, { once: true })
    })
  }

  /** Stops the timer and releases every waiter (they answer with what they have). Does not close the store. Idempotent. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.timer)
    this.events.emit('close')
    await this.sweeping
  }
}
