/**
 * Live progress. On a TTY (stderr) a few lines redrawn in place about 4 times a second;
 * otherwise one plain line every `intervalS` through the given log function.
 */
export type ProgressSnapshot = {
  elapsedMs: number
  devices: number
  online: number
  generated: number
  /** PUBLISH packets sent, resends included (the report's "published") */
  publishes: number
  acked: number
  unacked: number
  receipts: number
  connects: number
  connectionLosses: number
  reboots: number
  targetRate: number
}

export type ProgressHandle = { stop: () => void }

export type ProgressOptions<S extends ProgressSnapshot> = {
  snapshot: () => S
  mode: 'auto' | 'tty' | 'line' | 'off'
  intervalS: number
  /** Extra lines under the simulator's (e.g. gateway backlog from npm start). */
  extra?: () => string[]
  log?: (fields: Record<string, unknown>, msg: string) => void
  stream?: NodeJS.WriteStream
}

export function progressLine (s: ProgressSnapshot, prev: ProgressSnapshot | null): Record<string, number> {
  const dt = prev ? (s.elapsedMs - prev.elapsedMs) / 1000 : s.elapsedMs / 1000
  const rate = (a: number, b: number): number => dt > 0 ? Math.round((a - b) / dt) : 0
  return {
    elapsedS: Math.round(s.elapsedMs / 100) / 10,
    online: s.online,
    devices: s.devices,
    // the report's words: "generated" readings, "published" packets (resends included)
    generatedPerS: rate(s.generated, prev?.generated ?? 0),
    ackedPerS: rate(s.acked, prev?.acked ?? 0),
    targetPerS: s.targetRate,
    generated: s.generated,
    published: s.publishes,
    acked: s.acked,
    unacked: s.unacked,
    receipts: s.receipts,
    reconnects: Math.max(0, s.connects - s.devices),
    losses: s.connectionLosses,
    reboots: s.reboots
  }
}

export function startProgress<S extends ProgressSnapshot> (o: ProgressOptions<S>): ProgressHandle {
  const stream = o.stream ?? process.stderr
  const mode = o.mode === 'auto' ? (stream.isTTY ? 'tty' : 'line') : o.mode
  if (mode === 'off') return { stop: () => {} }
  let prev: S | null = null
  let drawn = 0
  const draw = (): void => {
    const s = o.snapshot()
    const l = progressLine(s, prev)
    prev = s
    if (mode === 'line') {
      if (o.log) o.log(l, 'progress')
      else stream.write(JSON.stringify({ msg: 'progress', ...l }) + '\n')
      return
    }
    const lines = [
      `devices ${l.online}/${l.devices} online   ${l.elapsedS}s`,
      `rate    generated ${l.generatedPerS}/s  acked ${l.ackedPerS}/s  (target ${l.targetPerS}/s)`,
      `totals  generated ${l.generated}  published ${l.published}  acked ${l.acked}  in flight ${l.unacked}  receipts ${l.receipts}`,
      `churn   reconnects ${l.reconnects}  connection losses ${l.losses}  reboots ${l.reboots}`,
      ...(o.extra ? o.extra() : [])
    ]
    let out = drawn > 0 ? `\x1b[${drawn}A` : ''
    for (const line of lines) out += `\r\x1b[2K${line}\n`
    stream.write(out)
    drawn = lines.length
  }
  const timer = setInterval(draw, mode === 'tty' ? 250 : o.intervalS * 1000)
  timer.unref()
  return {
    stop: () => { clearInterval(timer); if (mode === 'tty') draw() }
  }
}

/** The ingest's /v1/stats counts a live view shows. */
export type IngestCounts = { stored: number, duplicates: number, rejected: number, evicted: number }

/**
 * The ingest's line of `npm start`'s view: this run's answers, counted against the ingest's
 * counts before the gateway started. Its /v1/stats covers its whole data dir, so on a second
 * run the totals of earlier runs stood beside this run's readings and disagreed with them.
 */
export function ingestRunLine (before: IngestCounts | null, now: IngestCounts | null): string {
  const run = (k: keyof IngestCounts): number | string => now?.[k] === undefined ? '?' : now[k] - (before?.[k] ?? 0)
  const earlier = before !== null && before.stored > 0 ? `  (all runs: stored ${now?.stored ?? '?'})` : ''
  return `ingest  this run: stored ${run('stored')}  duplicate ${run('duplicates')}  rejected ${run('rejected')}  evicted ${run('evicted')}${earlier}`
}
