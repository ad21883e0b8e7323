/**
 * CPU per process over a bench window, pure arithmetic (no I/O, so it is unit tested):
 * the /proc/PID/stat line parsed into user and system seconds, and two snapshots turned
 * into microseconds of CPU per reading and % of one core. bench/e2e.ts reads the stat files
 * of its child processes (gateway, ingest, load generator) and `process.cpuUsage()` for
 * itself.
 */

export type CpuTimes = { userS: number, systemS: number }

/**
 * utime and stime (fields 14 and 15 of proc(5)) of a /proc/PID/stat line, in seconds. The
 * command name (field 2) is in parentheses and may hold spaces and parentheses itself, so
 * the fields are counted from its last ')'. Null when the line is not a stat line.
 */
export function parseProcStat (line: string, clkTck: number): CpuTimes | null {
  const close = line.lastIndexOf(')')
  if (close < 0 || line.indexOf('(') < 0 || !(clkTck > 0)) return null
  const fields = line.slice(close + 2).trim().split(' ') // from field 3 (state) on
  const utime = Number(fields[11])
  const stime = Number(fields[12])
  if (fields.length < 13 || !Number.isFinite(utime) || !Number.isFinite(stime)) return null
  return { userS: utime / clkTck, systemS: stime / clkTck }
}

/** `process.cpuUsage()` (microseconds) as CpuTimes. */
export const fromCpuUsage = (u: NodeJS.CpuUsage): CpuTimes => ({ userS: u.user / 1e6, systemS: u.system / 1e6 })

export type CpuShare = {
  /** user + system CPU seconds over the window */
  cpuS: number
  /** of one core over the window, % */
  pct: number
  /** microseconds of CPU per reading; null when no reading was counted */
  usPerReading: number | null
}

/** The CPU a process used between two snapshots, as % of a core over `windowS` and per reading of `readings`. */
export function cpuShare (before: CpuTimes | null, after: CpuTimes | null, windowS: number, readings: number): CpuShare | null {
  if (!before || !after || !(windowS > 0)) return null
  const cpuS = (after.userS + after.systemS) - (before.userS + before.systemS)
  return {
    cpuS: Number(cpuS.toFixed(3)),
    pct: Math.round(cpuS * 1000 / windowS) / 10,
    usPerReading: readings > 0 ? Number((cpuS * 1e6 / readings).toFixed(1)) : null
  }
}
