/**
 * Churn: once a second, each device independently has probability `churn` of an event; a
 * share `rebootRatio` of events are reboots (new boot, unacked queue lost), the rest are
 * network drops (reconnect and resend everything unacked). One timer for all devices.
 */
import type { Device } from './device.ts'

export type ChurnOptions = { churn: number, rebootRatio: number, random: () => number, periodMs?: number }

export type ChurnEvent = 'disconnect' | 'reboot'

/** Pure decision for one device and one period, so the split is testable. */
export function churnDecision (churn: number, rebootRatio: number, random: () => number): ChurnEvent | null {
  if (churn <= 0 || random() >= churn) return null
  return random() < rebootRatio ? 'reboot' : 'disconnect'
}

export class Churn {
  private timer: NodeJS.Timeout | null = null
  constructor (private readonly devices: readonly Device[], private readonly opts: ChurnOptions) {}

  start (): void {
    if (this.opts.churn <= 0 || this.timer) return
    this.timer = setInterval(() => this.round(), this.opts.periodMs ?? 1000)
    this.timer.unref()
  }

  round (): void {
    for (const d of this.devices) {
      if (d.state !== 'online') continue
      const e = churnDecision(this.opts.churn, this.opts.rebootRatio, this.opts.random)
      if (e === 'reboot') d.reboot()
      else if (e === 'disconnect') d.dropConnection()
    }
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }
}
