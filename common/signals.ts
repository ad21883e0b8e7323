/**
 * SIGINT/SIGTERM for the CLIs: the first signal starts a graceful stop, a second one quits
 * at once. One Ctrl-C often arrives twice within a few milliseconds: the terminal signals
 * the whole foreground process group, and `npm run` forwards the SIGINT it got to its child
 * as well. Counting that copy as "a second Ctrl-C" skipped the drain and exited 130, so a
 * repeat within `coalesceMs` of the first signal is taken as the same one. A person who
 * really presses Ctrl-C twice does so further apart than that.
 */

/** Signals this close together are one Ctrl-C (the terminal's and npm's forwarded copy). */
export const SIGNAL_COALESCE_MS = 500

export type StopSignalHandlers = {
  /** The first signal: start a graceful stop. */
  onStop: (signal: NodeJS.Signals) => void
  /** A signal after the window: quit now. */
  onForce: (signal: NodeJS.Signals) => void
  /** A copy within the window, ignored (for a debug line). */
  onRepeat?: (signal: NodeJS.Signals, afterMs: number) => void
  coalesceMs?: number
  signals?: readonly NodeJS.Signals[]
  /** For tests: the clock. */
  now?: () => number
}

/**
 * The decision alone (no process handlers), so it can be tested without signals: returns
 * the function to call with each signal received.
 */
export function stopSignalDecider (h: StopSignalHandlers): (signal: NodeJS.Signals) => void {
  const coalesceMs = h.coalesceMs ?? SIGNAL_COALESCE_MS
  const now = h.now ?? Date.now
  let firstAt: number | undefined
  return (signal) => {
    const t = now()
    if (firstAt === undefined) { firstAt = t; h.onStop(signal); return }
    if (t - firstAt < coalesceMs) { h.onRepeat?.(signal, t - firstAt); return }
    h.onForce(signal)
  }
}

/** Installs the handlers on `process` for SIGINT and SIGTERM (or `signals`). */
export function onStopSignals (h: StopSignalHandlers): void {
  const decide = stopSignalDecider(h)
  for (const s of h.signals ?? ['SIGINT', 'SIGTERM'] as const) process.on(s, decide)
}
