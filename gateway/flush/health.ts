/**
 * Upstream health as /status and /readyz see it: the last state, the last error, when it
 * last worked, since when it fails, and the pause after the ingest refused our token.
 * Times for decisions are monotonic (performance.now): a clock step must not park the loops.
 */
import type { Logger } from 'pino'

export type UpstreamState = 'idle' | 'ok' | 'retrying' | 'auth-failed' | 'unreachable'

export type UpstreamStatus = { state: UpstreamState, url: string, lastError: string | null, lastOkAt: number | null, failingSinceMs: number | null }

export class UpstreamHealth {
  private state: UpstreamState = 'idle'
  private lastError: string | null = null
  private lastOkAt: number | null = null
  private failingSince: number | null = null
  private authPausedUntil = 0

  constructor (private readonly log: Logger, private readonly unreadyAfterMs: number) {}

  ok (url: string): void {
    if (this.state !== 'ok') this.log.info({ url }, 'upstream ok')
    this.state = 'ok'
    this.failingSince = null
    this.lastOkAt = Date.now()
  }

  failed (err: Error, state: UpstreamState): void {
    if (this.state !== state || this.lastError !== err.message) this.log.warn({ err, state }, 'upstream request failed')
    this.state = state
    this.lastError = err.message
    if (this.failingSince === null) this.failingSince = performance.now()
  }

  /** The ingest refused our token: every partition waits `ms`. */
  pauseFor (ms: number): void {
    this.authPausedUntil = performance.now() + ms
  }

  /** How long flushing stays paused (0: not paused). */
  get pausedMs (): number {
    return Math.max(0, this.authPausedUntil - performance.now())
  }

  /** False while the upstream refuses our token, or has been failing for unreadyAfterMs. */
  get ready (): boolean {
    if (this.state === 'auth-failed') return false
    return this.failingSince === null || performance.now() - this.failingSince < this.unreadyAfterMs
  }

  status (url: string): UpstreamStatus {
    return { state: this.state, url, lastError: this.lastError, lastOkAt: this.lastOkAt, failingSinceMs: this.failingSince === null ? null : Math.round(performance.now() - this.failingSince) }
  }
}
