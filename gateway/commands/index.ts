/**
 * Commands to devices at the gateway (docs/commands.md "At the gateway"): the core between
 * the ingest's `CommandLink` and the broker.
 *
 * - `onCommands` (the link's callback) stores new commands durably (store.ts), then their
 *   `at-gateway` report is in the outbox; the promise resolves only then, so the link takes
 *   the next message (and the ingest stops offering) only for stored commands.
 * - Delivery: one command at a time per device, lowest `n` first, written into the device's
 *   own session (client id = device id, subscribed to `devices/{id}/commands` at QoS 1)
 *   and never routed to anyone else; `delivered` on its PUBACK; sent again to each new
 *   session until answered or expired.
 * - Answers come from the broker's `authorizePublish` (`answer`): stored before the PUBACK.
 * - The reporter sends the outbox and presence in `ReportsRequest`s and applies the
 *   per-report answers; back-off with jitter when the ingest cannot be reached.
 * - One timer: commands reaching `expiresAt` expire; tombstones past it are deleted.
 */
import { randomUUID } from 'node:crypto'
import type { Client } from 'aedes'
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import { decodeDeviceAnswer, decodeDeviceCommand, encodeDeviceCommand, type CommandsMessage, type PayloadFormat, type Presence, type Report, type ReportsRequest } from '../../protocol/commands.ts'
import { DEVICE_ID_RE } from '../../protocol/topics.ts'
import type { CommandHooks } from '../broker/index.ts'
import { Backoff, Sleeper } from '../flush/backoff.ts'
import type { Db } from '../store/db.ts'
import type { CommandLink } from './link.ts'
import { CommandStore, isFinished, isTombstone, stateOf, type CommandRecord, type GatewayCommandState } from './store.ts'

export const ANSWER_REFUSALS = ['invalid', 'unknown', 'expired', 'recalled'] as const
export type AnswerRefusal = (typeof ANSWER_REFUSALS)[number]

/** The command metrics, registered whether commands are on or not (docs/metrics.md lists them). */
export class CommandMetrics {
  readonly transitions: Counter<'state'>
  readonly answersRefused: Counter<'reason'>
  readonly reportsRejected: Counter
  readonly notTaken: Counter<'reason'>
  source: GatewayCommands | null = null

  constructor (registry: Registry) {
    const registers = [registry]
    this.transitions = new Counter({ name: 'gateway_commands_total', help: 'Command state changes at the gateway, by the state reached (at-gateway, delivered, completed, rejected, expired, recalled)', labelNames: ['state'], registers })
    this.answersRefused = new Counter({ name: 'gateway_command_answers_refused_total', help: 'Device answers refused (never reported): invalid, unknown (an id the device does not have), expired, recalled', labelNames: ['reason'], registers })
    this.reportsRejected = new Counter({ name: 'gateway_command_reports_rejected_total', help: 'Command reports the ingest rejected (code 3); dropped', registers })
    this.notTaken = new Counter({ name: 'gateway_commands_not_taken_total', help: 'Commands offered by the ingest and not stored (offered again later): held (--commands-max-held) or device (--commands-max-per-device)', labelNames: ['reason'], registers })
    const self = this
    new Gauge({ name: 'gateway_commands_held', help: 'Commands held (unfinished, or finished and not yet reported)', registers, collect () { this.set(self.source?.held ?? 0) } }) // eslint-disable-line no-new
    new Gauge({ name: 'gateway_command_reports_pending', help: 'Command state changes not yet acknowledged by the ingest', registers, collect () { this.set(self.source?.reportsPending ?? 0) } }) // eslint-disable-line no-new
  }
}

export type GatewayCommandsConfig = {
  gatewayId: string
  durability: 'process' | 'power'
  commandsMaxHeld: number
  commandsMaxPerDevice: number
  commandReportsMax: number
  /** wait after an ingest answered 404 (it has no command API: a readings-only upstream); default 5 min */
  commandApiRetryMs?: number
}

/** What the core needs of the broker (gateway/broker/index.ts `Broker`). */
export interface CommandBroker {
  attachCommands (hooks: CommandHooks): void
  commandSession (id: string): Client | null
  deliverCommand (client: Client, payload: Buffer): void
}

/** One command as the operator page lists it (`GatewayCommands.recent`). */
export type CommandSummary = {
  id: string
  device: string
  name: string
  n: number
  state: string
  createdAt: number
  /** time of its last state change */
  changedAt: number
  expiresAt: number
  /** state changes not yet acknowledged by the ingest */
  unreported: number
}

export type CommandsStatus = { held: number, byState: Record<string, number>, reportsPending: number, link: ReturnType<CommandLink['status']> }

type Sent = { id: string, session: Client }
type Pending = { r: CommandRecord, from: number, to: number }

const MAX_TIMER_MS = 2 ** 31 - 1
const IDLE_CHECK_MS = 2000
/**
 * A tombstone outlives its command's `expiresAt` by this much: a late answer then counts as
 * `expired` (not `unknown`), and clocks a little apart do not revive a finished id.
 */
const TOMBSTONE_GRACE_MS = 60_000

export class GatewayCommands implements CommandHooks {
  private readonly store: CommandStore
  private readonly log: Logger
  private closed = false
  private readonly sessions = new Map<string, { session: Client, since: number }>()
  private readonly sent = new Map<string, Sent>()
  private presence = new Map<string, Presence>()
  private snapshotDue = true
  private readonly backoff = new Backoff(500, 30_000)
  private readonly sleeper = new Sleeper()
  private idle: (() => void) | null = null
  private loop: Promise<void> | null = null
  private timer: NodeJS.Timeout | null = null
  private readonly logged = new Set<string>()
  private linkState: string | null = null

  constructor (
    db: Db,
    private readonly link: CommandLink,
    private readonly broker: CommandBroker,
    private readonly payloadFormat: (device: string) => PayloadFormat,
    private readonly config: GatewayCommandsConfig,
    private readonly metrics: CommandMetrics,
    logger: Logger,
    private readonly now: () => number = Date.now
  ) {
    this.log = logger.child({ component: 'commands' })
    this.store = new CommandStore(db, config.durability === 'power', this.log)
  }

  /** Loads the held commands, attaches to the broker, starts the link and the reporter. */
  async start (): Promise<void> {
    await this.store.load()
    this.metrics.source = this
    this.broker.attachCommands(this)
    this.link.start((m) => this.onCommands(m))
    this.loop = this.reportLoop()
    this.schedule()
    this.log.info({ held: this.held, reportsPending: this.reportsPending }, 'commands started')
  }

  // ---- state -------------------------------------------------------------------------

  /** Unfinished commands, and finished ones not yet reported. */
  get held (): number {
    let n = 0
    for (const r of this.store.records.values()) if (!isTombstone(r)) n++
    return n
  }

  get reportsPending (): number {
    let n = 0
    for (const r of this.store.records.values()) n += r.t.length - r.reported
    return n
  }

  status (): CommandsStatus {
    const byState: Record<string, number> = {}
    for (const r of this.store.records.values()) {
      const s = isTombstone(r) ? 'finished' : stateOf(r)
      byState[s] = (byState[s] ?? 0) + 1
    }
    return { held: this.held, byState, reportsPending: this.reportsPending, link: this.link.status() }
  }

  /**
   * The `limit` most recently changed commands (newest first), of `device` only when given:
   * held ones and finished ones still remembered. Read-only and one pass over the records
   * (the admin page polls it): a bounded insertion into at most `limit` entries.
   */
  recent (limit = 50, device?: string): { total: number, commands: CommandSummary[] } {
    const n = Math.max(1, Math.min(Math.floor(limit) || 50, 500))
    const top: CommandRecord[] = []
    const at = (r: CommandRecord): number => r.t[r.t.length - 1]![1]
    let total = 0
    for (const r of this.store.records.values()) {
      if (device !== undefined && r.cmd.device !== device) continue
      total++
      const t = at(r)
      // ties: the later record (created or loaded later) first
      if (top.length === n && t < at(top[n - 1]!)) continue
      let i = top.length
      while (i > 0 && at(top[i - 1]!) <= t) i--
      top.splice(i, 0, r)
      if (top.length > n) top.pop()
    }
    return {
      total,
      commands: top.map((r) => ({ id: r.cmd.id, device: r.cmd.device, name: r.cmd.name, n: r.cmd.n, state: stateOf(r), createdAt: r.cmd.createdAt, changedAt: at(r), expiresAt: r.cmd.expiresAt, unreported: r.t.length - r.reported }))
    }
  }

  /** A record (tests, /status tools). */
  record (id: string): CommandRecord | undefined { return this.store.records.get(id) }

  private move (r: CommandRecord, state: GatewayCommandState, detail?: unknown): void {
    r.t.push(detail === undefined ? [state, this.now()] : [state, this.now(), detail])
    this.store.put(r)
    this.metrics.transitions.inc({ state })
  }

  private openOf (device: string): CommandRecord[] {
    const out: CommandRecord[] = []
    for (const r of this.store.ofDevice(device)) if (!isFinished(r)) out.push(r)
    return out
  }

  // ---- from the ingest -----------------------------------------------------------------

  async onCommands (m: CommandsMessage): Promise<void> {
    if (this.closed) throw new Error('gateway closing')
    const devices = new Set<string>()
    let held = this.held
    const perDevice = new Map<string, number>()
    let notTaken = 0
    for (const c of m.commands) {
      if (this.store.records.has(c.id)) continue // repeated offer, or a finished id still remembered
      const open = perDevice.get(c.device) ?? this.openOf(c.device).length
      const reason = held >= this.config.commandsMaxHeld ? 'held' : open >= this.config.commandsMaxPerDevice ? 'device' : null
      if (reason !== null) { this.metrics.notTaken.inc({ reason }); notTaken++; continue }
      const r: CommandRecord = { cmd: c, t: [], reported: 0, durable: 0 }
      this.move(r, 'at-gateway')
      held++
      perDevice.set(c.device, open + 1)
      devices.add(c.device)
    }
    if (notTaken) this.log.warn({ notTaken, held, maxHeld: this.config.commandsMaxHeld, maxPerDevice: this.config.commandsMaxPerDevice }, 'commands not taken: over the limits; the ingest offers them again later')
    for (const rc of m.recalls) {
      const r = this.store.records.get(rc.id)
      if (!r || r.cmd.device !== rc.device) continue
      const s = stateOf(r)
      if (s === 'at-gateway') {
        this.move(r, 'recalled')
        if (this.sent.get(r.cmd.device)?.id === r.cmd.id) this.sent.delete(r.cmd.device)
        devices.add(r.cmd.device)
      } else if (r.reported >= r.t.length) {
        r.reported = r.t.length - 1 // report its current state again
        this.store.put(r)
      }
    }
    await this.store.persist()
    this.wake()
    this.schedule()
    for (const d of devices) this.deliverNext(d)
  }

  // ---- delivery ----------------------------------------------------------------------

  private deliverNext (device: string): void {
    if (this.closed) return
    const session = this.broker.commandSession(device)
    if (session === null) return
    for (;;) {
      let next: CommandRecord | undefined
      for (const r of this.openOf(device)) if (r.durable > 0 && (next === undefined || r.cmd.n < next.cmd.n)) next = r
      if (next === undefined) return
      if (this.now() >= next.cmd.expiresAt) { this.expire(next); continue }
      const s = this.sent.get(device)
      if (s?.id === next.cmd.id && s.session === session) return // waiting for its answer
      const c = next.cmd
      this.sent.set(device, { id: c.id, session })
      this.broker.deliverCommand(session, encodeDeviceCommand({ id: c.id, name: c.name, args: c.args, expiresAt: c.expiresAt }, this.payloadFormat(device)))
      return
    }
  }

  private expire (r: CommandRecord): void {
    this.move(r, 'expired')
    if (this.sent.get(r.cmd.device)?.id === r.cmd.id) this.sent.delete(r.cmd.device)
    this.persistQuietly()
  }

  connected (id: string, session: Client): void {
    if (!DEVICE_ID_RE.test(id)) return
    const at = this.now()
    this.sessions.set(id, { session, since: at })
    this.presence.set(id, [id, 1, at])
    this.wake()
    this.deliverNext(id)
  }

  disconnected (id: string, session: Client): void {
    if (this.sessions.get(id)?.session !== session) return // taken over: the new session counts
    this.sessions.delete(id)
    this.sent.delete(id)
    this.presence.set(id, [id, 0, this.now()])
    this.wake()
  }

  subscribed (id: string): void {
    this.deliverNext(id)
  }

  acked (id: string, _session: Client, payload: Buffer): void {
    let cid: string
    try { cid = decodeDeviceCommand(payload).id } catch { return }
    const r = this.store.records.get(cid)
    if (!r || r.cmd.device !== id || stateOf(r) !== 'at-gateway') return
    this.move(r, 'delivered')
    this.persistQuietly()
  }

  answer (_session: Client, id: string, payload: Buffer, done: (err: Error | null) => void): void {
    if (this.closed) { done(new Error('gateway closing: answer not stored')); return }
    let a
    try { a = decodeDeviceAnswer(payload) } catch (err) { this.refuse(id, 'invalid', undefined, (err as Error).message); done(null); return }
    const r = this.store.records.get(a.id)
    if (!r || r.cmd.device !== id) { this.refuse(id, 'unknown', a.id); done(null); return }
    const s = stateOf(r)
    if (s === 'expired') { this.refuse(id, 'expired', a.id); done(null); return }
    if (s === 'recalled') { this.refuse(id, 'recalled', a.id); done(null); return }
    if (s === 'completed' || s === 'rejected') { done(null); return } // a repeated answer: kept once
    if (this.now() >= r.cmd.expiresAt) { this.expire(r); this.refuse(id, 'expired', a.id); done(null); this.wake(); return }
    if (s === 'at-gateway') this.move(r, 'delivered') // its PUBACK not seen (a clean session): the answer proves it
    this.move(r, a.ok ? 'completed' : 'rejected', a.ok ? a.result : a.error)
    if (this.sent.get(id)?.id === a.id) this.sent.delete(id)
    this.store.persist().then(() => {
      done(null)
      this.wake()
      this.schedule()
      this.deliverNext(id)
    }, (err: Error) => done(err))
  }

  private refuse (device: string, reason: AnswerRefusal, cid: string | undefined, detail?: string): void {
    this.metrics.answersRefused.inc({ reason })
    const key = `${reason}\u0000${device}`
    if (this.logged.has(key)) return
    if (this.logged.size > 10_000) this.logged.clear()
    this.logged.add(key)
    this.log.warn({ device, reason, command: cid, detail }, 'command answer refused, not reported (logged once per device and reason)')
  }

  private persistQuietly (): void {
    this.store.persist().then(() => { this.wake(); this.schedule() }, () => {}) // the store logged it; written again with the next change
  }

  // ---- expiry ------------------------------------------------------------------------

  private schedule (): void {
    if (this.closed) return
    let next = Infinity
    for (const r of this.store.records.values()) {
      if (!isFinished(r)) next = Math.min(next, r.cmd.expiresAt)
      else if (isTombstone(r)) next = Math.min(next, r.cmd.expiresAt + TOMBSTONE_GRACE_MS)
    }
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    if (next === Infinity) return
    this.timer = setTimeout(() => this.sweep(), Math.min(MAX_TIMER_MS, Math.max(0, next - this.now() + 1)))
    this.timer.unref()
  }

  private sweep (): void {
    this.timer = null
    if (this.closed) return
    const now = this.now()
    const devices = new Set<string>()
    let changed = false
    for (const r of [...this.store.records.values()]) {
      if (now < r.cmd.expiresAt) continue
      if (!isFinished(r)) {
        this.move(r, 'expired')
        if (this.sent.get(r.cmd.device)?.id === r.cmd.id) this.sent.delete(r.cmd.device)
        devices.add(r.cmd.device)
        changed = true
      } else if (isTombstone(r) && now >= r.cmd.expiresAt + TOMBSTONE_GRACE_MS) {
        this.store.delete(r.cmd.id)
        changed = true
      }
    }
    if (changed) this.persistQuietly()
    for (const d of devices) this.deliverNext(d)
    this.schedule()
  }

  // ---- reports -----------------------------------------------------------------------

  private wake (): void {
    const f = this.idle
    this.idle = null
    f?.()
  }

  private pending (): Pending[] {
    const out: Pending[] = []
    for (const r of this.store.records.values()) {
      const to = Math.min(r.durable, r.t.length)
      if (r.reported < to) out.push({ r, from: r.reported, to })
    }
    return out.sort((a, b) => a.r.t[a.from]![1] - b.r.t[b.from]![1])
  }

  private async reportLoop (): Promise<void> {
    while (!this.closed) {
      const max = this.config.commandReportsMax
      const reports: Report[] = []
      const refs: Array<{ r: CommandRecord, i: number }> = []
      for (const p of this.pending()) {
        for (let i = p.from; i < p.to && reports.length < max; i++) {
          const [state, at, detail] = p.r.t[i]!
          reports.push(detail === undefined ? [p.r.cmd.id, p.r.cmd.device, state, at] : [p.r.cmd.id, p.r.cmd.device, state, at, detail])
          refs.push({ r: p.r, i })
        }
        if (reports.length >= max) break
      }
      const snapshot = this.snapshotDue
      const presence: Presence[] = snapshot
        ? [...this.sessions].map(([id, s]): Presence => [id, 1, s.since]).slice(0, max)
        : [...this.presence.values()].slice(0, max)
      const sentPresence = snapshot ? null : presence
      if (reports.length === 0 && presence.length === 0 && !snapshot) {
        // woken by a change; the link's state is looked at every IDLE_CHECK_MS meanwhile
        await new Promise<void>((resolve) => {
          const t = setTimeout(() => { this.idle = null; resolve() }, IDLE_CHECK_MS)
          this.idle = () => { clearTimeout(t); resolve() }
        })
        this.noteLink()
        continue
      }
      if (snapshot) this.presence = new Map()
      const req: ReportsRequest = { v: 1, gateway: this.config.gatewayId, batch: randomUUID(), reports, presence, ...(snapshot ? { snapshot: true } : {}) }
      const ans = await this.link.sendReports(req)
      if (this.closed) return
      if (ans.kind !== 'results') {
        if (snapshot) this.snapshotDue = true
        else for (const p of sentPresence!) if (!this.presence.has(p[0])) this.presence.set(p[0], p)
        this.snapshotDue = true // the next request after a failure tells the whole picture again
        if (ans.kind === 'refused' && ans.status === 404) {
          // a readings-only upstream: say so once, and ask again only now and then
          const wait = this.config.commandApiRetryMs ?? 300_000
          if (!this.logged.has('no-command-api')) {
            this.logged.add('no-command-api')
            this.log.warn({ retryInMs: wait }, 'the upstream has no command API (404): commands to devices wait until it has one; readings are not affected')
          }
          await this.sleeper.sleep(wait)
          continue
        }
        const wait = ans.kind === 'refused' && ans.retryAfterMs !== undefined ? ans.retryAfterMs : this.backoff.next()
        this.log.warn({ kind: ans.kind, detail: ans.kind === 'refused' ? ans.message : ans.error, retryInMs: wait, reports: reports.length }, 'command reports not taken; sending again after back-off')
        await this.sleeper.sleep(wait)
        continue
      }
      this.noteLink()
      if (snapshot) this.snapshotDue = false
      else for (const p of sentPresence!) if (this.presence.get(p[0]) === p) this.presence.delete(p[0])
      const acked = this.apply(refs, ans.results)
      // the acknowledgements are written in the background (lost ones: the reports go again,
      // answered duplicate); the next request does not wait for that write
      this.store.persist().then(() => this.schedule(), () => {})
      this.schedule()
      if (acked === 0 && reports.length > 0) {
        // every report answered retry (or not at all): not at once again
        const wait = this.backoff.next()
        this.log.warn({ reports: reports.length, retryInMs: wait }, 'command reports answered retry; sending again after back-off')
        await this.sleeper.sleep(wait)
      } else {
        this.backoff.reset()
      }
    }
  }

  /** After a link reconnect (its state back to ok), the next request carries a presence snapshot. */
  private noteLink (): void {
    const state = this.link.status().state
    if (state === 'ok' && this.linkState !== null && this.linkState !== 'ok') this.snapshotDue = true
    this.linkState = state
  }

  /** Applies the per-report answers; returns how many reports were acknowledged. */
  private apply (refs: Array<{ r: CommandRecord, i: number }>, results: readonly (readonly [number, number, string?])[]): number {
    let acked = 0
    const code = new Map<number, readonly [number, number, string?]>()
    for (const x of results) code.set(x[0], x)
    const blocked = new Set<CommandRecord>()
    refs.forEach(({ r, i }, idx) => {
      if (blocked.has(r)) return
      const res = code.get(idx)
      const c = res?.[1]
      if (c !== 0 && c !== 1 && c !== 3) { blocked.add(r); return }
      if (r.reported !== i) { blocked.add(r); return }
      if (c === 3) {
        this.metrics.reportsRejected.inc()
        this.log.warn({ command: r.cmd.id, device: r.cmd.device, state: r.t[i]![0], reason: res?.[2] }, 'command report rejected by the ingest; dropped')
      }
      r.reported = i + 1
      acked++
      if (isTombstone(r) && stateOf(r) === 'recalled') this.store.delete(r.cmd.id)
      else this.store.put(r)
    })
    return acked
  }

  /** Stops delivering and reporting, closes the link, waits for the writes in progress. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.timer) clearTimeout(this.timer)
    this.metrics.source = null
    await this.link.close()
    this.wake()
    this.sleeper.wake()
    await this.loop
    await this.store.drain()
  }
}
