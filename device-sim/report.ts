/**
 * The end-of-run report: what was sent and acknowledged, per device and in total, as JSON
 * (`--report FILE`) and as a short human summary. Per device it holds range lists, not an
 * entry per reading, so 10,000 devices x hours stays small.
 */
import { writeFile } from 'node:fs/promises'
import type { AuditResult } from './audit.ts'
import type { CommandAuditResult } from './command-audit.ts'
import type { DriverCounts, DriverSummary } from './command-driver.ts'
import type { SimConfig } from './config.ts'
import { bootToJson, type DeviceJson, type DeviceRecord } from './record.ts'
import type { LatenessStats } from './scheduler.ts'
import type { Counters, SimStats } from './stats.ts'

type SnapshotLike = Counters & { elapsedMs: number, samplingMs: number, devices: number, online: number, unacked: number, targetRate: number, lateness: LatenessStats }

export type SimReport = {
  version: 1
  startedAt: string
  endedAt: string | null
  durationS: number
  config: Omit<SimConfig, 'help'>
  totals: Counters & { devices: number, acknowledged: number, unackedAtEnd: number, confirmed: number }
  pacing: { targetRate: number, achievedRate: number, ackedRate: number, errorPct: number, lateness: LatenessStats }
  pubackMs: ReturnType<SimStats['pubackMs']['summary']>
  receiptMs: ReturnType<SimStats['receiptMs']['summary']>
  devices: (DeviceJson & { generated: number, acknowledged: number, unackedAtEnd: number })[]
  audit?: AuditResult
  /** With commands sent (--commands-rate): the command audit and the driver's counts. */
  commandAudit?: CommandAuditResult & { driver: DriverCounts, summary: DriverSummary }
}

const wallOf = (perfMs: number): string => new Date(perfMs).toISOString()
const r2 = (x: number): number => Math.round(x * 100) / 100

export function buildReport (s: { config: SimConfig, stats: SimStats, snapshot: SnapshotLike, startedAt: number, endedAt: number, records: readonly DeviceRecord[] }): SimReport {
  const { help: _help, ...config } = s.config
  const secs = s.snapshot.elapsedMs / 1000
  let unackedAtEnd = 0
  let confirmed = 0
  const devices = s.records.map((d) => {
    let generated = 0; let acknowledged = 0; let u = 0
    for (const b of d.boots) {
      generated += b.generated
      acknowledged += b.acked.size
      u += b.endedBy ? b.unackedAtEnd : b.generated - b.acked.size
      confirmed += b.confirmedUpTo ?? 0
    }
    unackedAtEnd += u
    return { id: d.id, generated, acknowledged, unackedAtEnd: u, boots: d.boots.map(bootToJson) }
  })
  // rates over the time the scheduler ran, not the stop grace after it
  const sampS = s.snapshot.samplingMs / 1000
  const achievedRate = sampS > 0 ? s.snapshot.generated / sampS : 0
  return {
    version: 1,
    startedAt: s.startedAt ? wallOf(s.startedAt) : new Date().toISOString(),
    endedAt: s.endedAt ? wallOf(s.endedAt) : null,
    durationS: r2(secs),
    config,
    totals: { ...s.stats.counters, devices: s.records.length, acknowledged: s.stats.counters.acked, unackedAtEnd, confirmed },
    pacing: {
      targetRate: s.snapshot.targetRate,
      achievedRate: r2(achievedRate),
      ackedRate: r2(sampS > 0 ? s.snapshot.acked / sampS : 0),
      errorPct: s.snapshot.targetRate > 0 ? r2(100 * (achievedRate - s.snapshot.targetRate) / s.snapshot.targetRate) : 0,
      lateness: s.snapshot.lateness
    },
    pubackMs: s.stats.pubackMs.summary(),
    receiptMs: s.stats.receiptMs.summary(),
    devices
  }
}

export async function writeReport (file: string, report: SimReport): Promise<void> {
  await writeFile(file, JSON.stringify(report) + '\n')
}

export function formatReport (r: SimReport): string {
  const t = r.totals
  return [
    `device-sim: ${t.devices} devices, ${r.durationS} s`,
    `  generated ${t.generated}  published ${t.publishes} (${t.resends} resends)  acknowledged ${t.acknowledged}  unacked at end ${t.unackedAtEnd}  skipped ${t.skipped}`,
    `  rate target ${r.pacing.targetRate}/s achieved ${r.pacing.achievedRate}/s (${r.pacing.errorPct}%)  acked ${r.pacing.ackedRate}/s  tick lateness p99 ${r.pacing.lateness.p99Ms} ms`,
    `  connects ${t.connects}  losses ${t.connectionLosses}  churn drops ${t.churnDisconnects}  reboots ${t.reboots} (${t.droppedOnReboot} unacked dropped)`,
    `  PUBACK ms p50 ${r.pubackMs.p50Ms} p99 ${r.pubackMs.p99Ms}  receipts ${t.receipts}, confirmation ms p50 ${r.receiptMs.p50Ms} p99 ${r.receiptMs.p99Ms}`,
    ...(t.commandsReceived > 0 || t.commandSubscribeRefused > 0
      ? [`  commands received ${t.commandsReceived} (${t.commandsRedelivered} redelivered)  executed ${t.commandsExecuted}  expired on arrival ${t.commandsExpired}  answers ${t.commandAnswers}  undecodable ${t.commandErrors}  subscriptions refused ${t.commandSubscribeRefused}`]
      : [])
  ].join('\n')
}

export function formatAudit (a: AuditResult): string {
  const t = a.totals
  const lines = [
    `audit: ${a.ok ? 'PASS' : 'FAIL'} (${a.devices} devices, ${a.failedDevices} failed)`,
    `  acknowledged ${t.acknowledged}  stored upstream ${t.stored}  lost ${t.lost}  duplicated ${t.duplicated}  out of order ${t.outOfOrder}  unexpected ${t.unexpected}`,
    `  allowed: unacked lost ${t.unackedLost} (never acknowledged: reboot or in flight at stop)  unacked stored ${t.unackedStored}  dead-lettered ${t.deadLettered}`
  ]
  for (const f of a.failures.slice(0, 10)) {
    const detail = f.boots.filter((b) => b.lost || b.duplicated || b.outOfOrder || b.unexpected)
      .map((b) => `boot ${b.boot}: lost ${b.lost} ${JSON.stringify(b.lostRanges)} dup ${b.duplicated} ${JSON.stringify(b.duplicatedSeqs)} ooo ${b.outOfOrder} unexpected ${b.unexpected}`)
    lines.push(`  ${f.id}: ${detail.join('; ')}`)
  }
  return lines.join('\n')
}
