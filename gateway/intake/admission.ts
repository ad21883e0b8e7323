/**
 * Overload admission: past the rate the gateway can both take and upload, the intake
 * would take every reading and leave the flusher no time (one event loop does both), so the
 * upload falls as the offered rate rises and the backlog grows without end. While the
 * gateway is CPU-bound and the upstream answers, readings are admitted at most
 * `overloadIntakeRatio` times the rate the upstream answered in the last second; the rest
 * wait here, in arrival order, with their PUBACKs (nothing about them is acknowledged, so
 * nothing can be lost), and a device with a reading waiting is not read further until it
 * is admitted and fewer than `RESUME_BELOW` readings wait (its socket's backpressure slows
 * it down, and its packets cost no parsing).
 *
 * When it limits, all four must hold over the last second:
 * - the event loop was busy at least `BUSY` of the time (event-loop utilisation);
 * - the upstream answered (uploads go on): during an outage or a slow upstream the buffer
 *   takes everything, that is what it is for;
 * - more was admitted than `ratio` x uploaded (the backlog grows because of the intake);
 * - the backlog is more than `MIN_BACKLOG` items.
 * While limiting, every `TICK_MS` the limit follows `ratio` x the upload rate (falling at
 * most by half a tick), grows by a tenth when the loop has room, and the limiting ends when
 * the upstream stops answering for two seconds (the held readings are admitted at once),
 * when nothing waited for a whole second, or when the backlog is down to `MIN_BACKLOG` (the
 * upload caught up). docs/performance.md has the measurements.
 *
 * Injected sources (clock, utilisation, counts) keep it testable without a loaded box.
 */
import { performance } from 'node:perf_hooks'

/** The socket read gate of a client (gateway/broker/aedes-internals.ts `installReadGate`). */
export type ReadGate = { pause: () => void, resume: () => void }

export type AdmissionSources = {
  /** items the upstream answered (stored, duplicate or dead-lettered), cumulative */
  uploaded: () => number
  /** items buffered now */
  backlog: () => number
  /** event-loop utilisation since the previous call, 0..1 */
  busy: () => number
  /** monotonic milliseconds */
  now: () => number
  /** the read gate of a client, if it has one */
  gateOf: (client: object) => ReadGate | undefined
  /**
   * An admitted reading's handling threw (a bug: the intake answers its own errors). Outside
   * Aedes' hook now, so the owner does what the broker's hook guard would: log and close
   * that client (it resends what was not acknowledged). The other readings go on.
   */
  failed: (client: object, err: unknown) => void
}

export type AdmissionStatus = { limiting: boolean, limitPerS: number | null, held: number, busy: number, uploadedPerS: number, admittedPerS: number }

/** least share of the last second the event loop was busy for the gateway to count as CPU-bound */
export const BUSY = 0.9
/** below this share of busy time while limiting, the limit grows */
const ROOM = 0.8
export const TICK_MS = 250
const WINDOW_TICKS = 4 // one second
export const MIN_BACKLOG = 5000
/** the limit never goes below this (readings/s): a few devices always get through */
export const MIN_LIMIT = 500
/**
 * A device whose held readings were all admitted is read again only while fewer than this
 * are held (the others in the order they became due): what one socket read brings can be a
 * thousand readings, so this, not the per-device pause alone, bounds what is held.
 */
export const RESUME_BELOW = 10_000
/** held readings beyond this are admitted anyway (a last bound on memory) */
export const MAX_HELD = 100_000
const RELEASE_MS = 5

type Held = { client: object, run: () => void }
type Sample = { t: number, admitted: number, uploaded: number, busy: number }

const HELD = Symbol('heldReadings')
type Counted = { [HELD]?: number }

export class Admission {
  private limit = Infinity
  private tokens = 0
  private refilledAt = 0
  private readonly queue: Held[] = []
  /** devices with nothing held, waiting to be read again (RESUME_BELOW) */
  private readonly toResume: object[] = []
  private head = 0
  private admitted = 0
  private readonly samples: Sample[] = []
  private tick: NodeJS.Timeout | null = null
  private release: NodeJS.Timeout | null = null
  private quietTicks = 0
  private noUploadTicks = 0
  private lastBusy = 0
  /** readings held at least once, cumulative (metrics) */
  heldTotal = 0
  /** readings admitted past MAX_HELD without waiting (metrics) */
  overflowTotal = 0
  /** times limiting started (metrics) */
  episodes = 0

  constructor (private readonly ratio: number, private readonly src: AdmissionSources, private readonly onChange: (limiting: boolean, limitPerS: number | null, why: string) => void = () => {}) {}

  get enabled (): boolean { return this.ratio > 0 }
  get limiting (): boolean { return this.limit !== Infinity }
  get held (): number { return this.queue.length - this.head }

  /** Starts the controller (a timer that does not keep the process alive). */
  start (): void {
    if (!this.enabled || this.tick) return
    this.samples.push({ t: this.src.now(), admitted: this.admitted, uploaded: this.src.uploaded(), busy: this.src.busy() })
    this.tick = setInterval(() => this.control(), TICK_MS)
    this.tick.unref()
  }

  /**
   * The per-reading check (no allocation): true, the reading goes on now; false, it must
   * wait: call `hold` with what to run once it is admitted.
   */
  admit (): boolean {
    if (this.limit === Infinity) { this.admitted++; return true }
    if (this.held === 0) {
      this.refill()
      if (this.tokens >= 1) { this.tokens--; this.admitted++; return true }
    }
    if (this.held >= MAX_HELD) { this.overflowTotal++; this.admitted++; return true }
    return false
  }

  /** A reading `admit` refused waits; `run` is called when it is admitted (in arrival order). */
  hold (client: object, run: () => void): void {
    this.queue.push({ client, run })
    this.heldTotal++
    const c = client as Counted
    const n = (c[HELD] ?? 0) + 1
    c[HELD] = n
    if (n === 1) this.src.gateOf(client)?.pause()
    this.scheduleRelease()
  }

  /** One controller step (the timer calls it every TICK_MS; tests call it directly). */
  control (): void {
    if (!this.enabled) return
    const t = this.src.now()
    const s: Sample = { t, admitted: this.admitted, uploaded: this.src.uploaded(), busy: this.src.busy() }
    this.samples.push(s)
    if (this.samples.length > WINDOW_TICKS + 1) this.samples.shift()
    const first = this.samples[0]!
    const dt = (t - first.t) / 1000
    if (dt <= 0) return
    const uploadedPerS = (s.uploaded - first.uploaded) / dt
    const admittedPerS = (s.admitted - first.admitted) / dt
    let busy = 0
    for (let i = 1; i < this.samples.length; i++) busy += this.samples[i]!.busy
    busy /= Math.max(1, this.samples.length - 1)
    this.lastBusy = busy
    const tickUploaded = s.uploaded - this.samples[this.samples.length - 2]!.uploaded
    if (!this.limiting) {
      if (this.samples.length <= WINDOW_TICKS) return // a whole second first
      if (busy >= BUSY && uploadedPerS > 0 && admittedPerS > this.ratio * uploadedPerS && this.src.backlog() > MIN_BACKLOG) {
        this.episodes++
        this.quietTicks = 0
        this.noUploadTicks = 0
        this.setLimit(Math.max(MIN_LIMIT, this.ratio * uploadedPerS, admittedPerS / 2), `event loop busy ${Math.round(busy * 100)}%, ${Math.round(admittedPerS)} readings/s taken, ${Math.round(uploadedPerS)}/s uploaded`)
      }
      return
    }
    this.noUploadTicks = tickUploaded > 0 ? 0 : this.noUploadTicks + 1
    this.quietTicks = this.held === 0 ? this.quietTicks + 1 : 0
    if (this.noUploadTicks >= 2 * WINDOW_TICKS) { this.stop('the upstream stopped answering: the buffer takes everything'); return }
    if (this.quietTicks >= WINDOW_TICKS) { this.stop('no reading waited for a second'); return }
    // the upload caught up: below this it is the intake that feeds it, and a limit tied to
    // the upload rate would only follow itself down
    if (this.src.backlog() <= MIN_BACKLOG) { this.stop('the backlog is uploaded'); return }
    if (busy < ROOM) this.setLimit(this.limit * 1.1, null)
    else this.setLimit(Math.max(MIN_LIMIT, this.ratio * uploadedPerS, this.limit / 2), null)
  }

  status (): AdmissionStatus {
    const last = this.samples[this.samples.length - 1]
    const first = this.samples[0]
    const dt = last && first ? (last.t - first.t) / 1000 : 0
    return {
      limiting: this.limiting,
      limitPerS: this.limiting ? Math.round(this.limit) : null,
      held: this.held,
      busy: Math.round(this.lastBusy * 100) / 100,
      uploadedPerS: dt > 0 ? Math.round((last!.uploaded - first!.uploaded) / dt) : 0,
      admittedPerS: dt > 0 ? Math.round((last!.admitted - first!.admitted) / dt) : 0
    }
  }

  /** Stops limiting and admits every held reading now (shutdown, tests). */
  close (): void {
    if (this.tick) clearInterval(this.tick)
    this.tick = null
    if (this.limiting) this.stop('closing')
  }

  /** Drops the held readings unanswered and stops (a process that died: the simulation's crash, like `Store.abandon`). */
  abandon (): void {
    if (this.tick) clearInterval(this.tick)
    if (this.release) clearTimeout(this.release)
    this.tick = null
    this.release = null
    this.queue.length = 0
    this.head = 0
    this.toResume.length = 0
    this.limit = Infinity
  }

  /** Limits admission to `perS` readings/s (the controller's step; a test may drive it by hand after `close`). */
  limitTo (perS: number, why: string): void {
    this.setLimit(perS, why)
  }

  private setLimit (perS: number, why: string | null): void {
    const was = this.limiting
    if (!was) { this.tokens = 0; this.refilledAt = this.src.now() } else this.refill()
    this.limit = perS
    if (why !== null || !was) this.onChange(true, Math.round(perS), why ?? '')
  }

  private stop (why: string): void {
    this.limit = Infinity
    this.onChange(false, null, why)
    this.releaseAll()
  }

  private refill (): void {
    const t = this.src.now()
    // at most a quarter of a second's worth saved up (a long turn of the loop does not cost
    // the intake its share; a longer stall is not made up in one burst)
    this.tokens = Math.min(this.tokens + (t - this.refilledAt) * this.limit / 1000, Math.max(1, this.limit / 4))
    this.refilledAt = t
  }

  private scheduleRelease (): void {
    if (this.release) return
    this.release = setTimeout(() => { this.release = null; this.releaseDue() }, RELEASE_MS)
    this.release.unref() // the sockets of the held readings keep the process alive, not this
  }

  /** Admits what the tokens allow, oldest first. */
  releaseDue (): void {
    if (this.limit === Infinity) { this.releaseAll(); return }
    this.refill()
    const n = Math.min(Math.floor(this.tokens), this.held)
    this.tokens -= n
    this.admitHeld(n)
    if (this.held > 0) this.scheduleRelease()
  }

  private releaseAll (): void {
    if (this.release) { clearTimeout(this.release); this.release = null }
    // readings held while this runs (a resumed client's next packets) wait no longer either
    while (this.held > 0) this.admitHeld(this.held)
    this.resumeDue()
  }

  private admitHeld (n: number): void {
    const resume: object[] = []
    for (let i = 0; i < n; i++) {
      const h = this.queue[this.head]!
      this.queue[this.head] = undefined as unknown as Held
      this.head++
      this.admitted++
      const c = h.client as Counted
      const left = (c[HELD] ?? 1) - 1
      c[HELD] = left
      if (left === 0) resume.push(h.client)
      try {
        h.run()
      } catch (err) {
        this.src.failed(h.client, err)
      }
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) { this.queue.splice(0, this.head); this.head = 0 }
    if (this.head === this.queue.length) { this.queue.length = 0; this.head = 0 }
    for (const c of resume) this.toResume.push(c)
    this.resumeDue()
  }

  /** Reads devices again, oldest due first, while few enough readings are held (or none are limited). */
  private resumeDue (): void {
    // after the admissions: a resumed client may be read (and its next readings arrive) at once
    while (this.toResume.length > 0 && (this.held < RESUME_BELOW || !this.limiting)) {
      const c = this.toResume.shift()!
      if ((c as Counted)[HELD] === 0) this.src.gateOf(c)?.resume()
    }
  }
}

/** Event-loop utilisation since the previous call (Node's own measure of a busy loop). */
export function loopBusy (): () => number {
  let prev = performance.eventLoopUtilization()
  return () => {
    const now = performance.eventLoopUtilization()
    const d = performance.eventLoopUtilization(now, prev)
    prev = now
    return d.utilization
  }
}
