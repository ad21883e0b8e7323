/**
 * device-sim public face: `createSimulation(config)` runs N simulated devices against an
 * MQTT broker with one scheduler, optional churn, receipts and a final report; the audit
 * (`runAudit`, `auditDevice`) checks the ingest against what the devices recorded.
 *
 *   const sim = createSimulation(simConfig({ broker, devices: 100, rate: 1, count: 10 }))
 *   await sim.start()
 *   await sim.done          // --count / --duration reached (never resolves without them)
 *   await sim.stop()        // idempotent: waits up to stopGraceMs for PUBACKs, disconnects
 *   const result = await runAudit(sim.records(), { ingestUrl })
 */
import { Churn } from './churn.ts'
import type { SimConfig } from './config.ts'
import { Device } from './device.ts'
import type { DeviceCommandRecord } from './commands.ts'
import type { DeviceRecord } from './record.ts'
import { buildReport, type SimReport } from './report.ts'
import { realClock, Scheduler, type Clock, type LatenessStats } from './scheduler.ts'
import { rng, seedOf } from './sensors.ts'
import { newStats, type Counters, type SimStats } from './stats.ts'

export { simConfig, parseSimConfig, simSchema, type SimConfig } from './config.ts'
export { auditDevice, auditBoot, summarize, isFailure, type AuditResult, type DeviceAudit, type BootAudit, type AuditCounts, type StoredRow } from './audit.ts'
export { runAudit, fetchReadings, waitForDrain, AuditHttpError, type DrainProgress } from './audit-http.ts'
export { formatAudit, formatReport, writeReport, type SimReport } from './report.ts'
export { ingestRunLine, startProgress, type IngestCounts, type ProgressHandle } from './progress.ts'
export type { DeviceRecord, BootRecord } from './record.ts'
export { CommandFlash, handleCommand, COMMAND_NAMES, type CommandEntry, type DeviceCommandRecord, type CommandOutcome } from './commands.ts'
export { CommandDriver, type CommandDriverOptions, type SentCommand, type CommandView, type CommandKind, type DriverCounts, type DriverSummary } from './command-driver.ts'
export { auditCommands, formatCommandAudit, fetchCommandViews, type CommandAuditResult, type CommandAuditCounts, type CommandFailure } from './command-audit.ts'

export type Snapshot = Counters & {
  elapsedMs: number
  /** Time the scheduler ran (start to stop, without the stop grace): the base of rates. */
  samplingMs: number
  devices: number
  online: number
  /** Unacknowledged readings held by devices (queued or in flight). */
  unacked: number
  inFlight: number
  targetRate: number
  lateness: LatenessStats
}

export type Simulation = {
  readonly config: SimConfig
  readonly stats: SimStats
  readonly devices: readonly Device[]
  /** Resolves when --count or --duration is reached. */
  readonly done: Promise<void>
  start: () => Promise<void>
  /** Resolves once every device has connected at least once (or rejects after timeoutMs). */
  waitConnected: (timeoutMs?: number) => Promise<void>
  stop: () => Promise<void>
  snapshot: () => Snapshot
  /** Starts a new window for the tick lateness statistics (benchmarks). */
  resetLateness: () => void
  records: () => DeviceRecord[]
  /** Each device's command flash: ids received, executed, answered (the command audit's device half). */
  commandRecords: () => DeviceCommandRecord[]
  /** Ids of the devices connected now. */
  onlineIds: () => string[]
  report: () => SimReport
}

export function deviceId (prefix: string, i: number, n: number): string {
  return prefix + String(i).padStart(Math.max(4, String(n - 1).length), '0')
}

export function createSimulation (config: SimConfig, opts: { clock?: Clock } = {}): Simulation {
  const clock = opts.clock ?? realClock
  const stats = newStats()
  const random = rng(config.seed ^ 0x5eed)
  const firstBoot = config.boot || Math.round(Date.now())
  const periodMs = 1000 / config.rate
  let online = 0
  let everConnected = 0
  const connectedOnce = new Uint8Array(config.devices)
  // each device's reading period: set-interval commands change it
  const periods = new Float64Array(config.devices).fill(periodMs)
  let targetRate = config.devices * config.rate
  const devices: Device[] = []
  for (let i = 0; i < config.devices; i++) {
    const id = deviceId(config.idPrefix, i, config.devices)
    const idx = i
    devices.push(new Device(id, firstBoot, seedOf(id, config.seed), {
      config,
      stats,
      clock,
      random,
      onOnline: (up) => {
        online += up ? 1 : -1
        if (up && !connectedOnce[idx]) { connectedOnce[idx] = 1; everConnected++ }
      },
      onPeriod: (ms) => {
        targetRate += 1000 / ms - 1000 / periods[idx]!
        periods[idx] = ms
        // a device that reached --count, or a stopped run, stays unscheduled
        if (scheduler.has(idx)) scheduler.add(idx, clock.now() + ms, ms)
      }
    }))
  }
  let finished = 0
  let resolveDone: () => void = () => {}
  const done = new Promise<void>((resolve) => { resolveDone = resolve })
  const scheduler = new Scheduler(config.devices, (slot) => {
    const d = devices[slot]!
    d.tick()
    if (config.count > 0 && d.total >= config.count) {
      scheduler.remove(slot)
      if (++finished === devices.length) resolveDone()
    }
  }, clock)
  const churn = new Churn(devices, { churn: config.churn, rebootRatio: config.rebootRatio, random })
  let startedAt = 0
  let endedAt = 0
  let samplingEndedAt = 0
  let started = false
  let stopping: Promise<void> | null = null
  let rampTimer: NodeJS.Timeout | null = null
  let durationTimer: NodeJS.Timeout | null = null

  const start = async (): Promise<void> => {
    if (started) return
    started = true
    startedAt = clock.now()
    // phases spread evenly over one period: a smooth aggregate rate, no thundering herd
    for (let i = 0; i < devices.length; i++) scheduler.add(i, startedAt + (i / devices.length) * periodMs, periodMs)
    scheduler.begin()
    let next = 0
    const perTick = Math.max(1, Math.round(config.connectRate / 100))
    const ramp = (): void => {
      for (let k = 0; k < perTick && next < devices.length; k++) devices[next++]!.connect()
      if (next >= devices.length && rampTimer) { clearInterval(rampTimer); rampTimer = null }
    }
    rampTimer = setInterval(ramp, 10)
    ramp()
    churn.start()
    if (config.duration > 0) durationTimer = setTimeout(resolveDone, config.duration * 1000)
  }

  const waitConnected = async (timeoutMs = 60_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs
    while (everConnected < devices.length) {
      if (Date.now() > deadline) throw new Error(`${devices.length - everConnected} of ${devices.length} devices not connected after ${timeoutMs} ms`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      scheduler.stop()
      if (started) samplingEndedAt = clock.now()
      churn.stop()
      if (rampTimer) clearInterval(rampTimer)
      if (durationTimer) clearTimeout(durationTimer)
      rampTimer = durationTimer = null
      resolveDone()
      // let readings in flight be acknowledged before hanging up
      const deadline = Date.now() + config.stopGraceMs
      while (devices.some((d) => d.unacked > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25))
      for (const d of devices) d.stop()
      endedAt = clock.now()
    })()
    return stopping
  }

  const snapshot = (): Snapshot => {
    let unacked = 0
    let inFlight = 0
    for (const d of devices) { unacked += d.unacked; inFlight += d.inFlight }
    return {
      ...stats.counters,
      elapsedMs: started ? (endedAt || clock.now()) - startedAt : 0,
      samplingMs: started ? (samplingEndedAt || clock.now()) - startedAt : 0,
      devices: devices.length,
      online,
      unacked,
      inFlight,
      targetRate: Math.round(targetRate * 1000) / 1000,
      lateness: scheduler.lateness()
    }
  }

  return {
    config,
    stats,
    devices,
    done,
    start,
    waitConnected,
    stop,
    snapshot,
    resetLateness: () => scheduler.resetLateness(),
    records: () => devices.map((d) => d.record),
    commandRecords: () => devices.map((d) => d.flash.record),
    onlineIds: () => devices.filter((d) => d.state === 'online').map((d) => d.id),
    report: () => buildReport({ config, stats, snapshot: snapshot(), startedAt, endedAt, records: devices.map((d) => d.record) })
  }
}
