/**
 * A simulated device's side of commands (docs/commands.md, "The device contract"): what it
 * does with a command on `devices/{id}/commands`, and what it keeps in its "flash".
 *
 * Invariants:
 * - A command id is EXECUTED at most once per device. The flash (`CommandFlash`) maps every
 *   id the device ever received to its answer; it lives in the simulation process beside
 *   the device, so it survives churn disconnects and reboots, as a device's flash would.
 * - A redelivered id (the gateway delivers an unanswered command again after a reconnect)
 *   is answered from the stored answer, byte for byte the same answer, and not executed.
 * - A command whose `expiresAt` has passed when it arrives is answered `ok: false,
 *   error: "expired"` and not executed (the answer is kept, so a redelivery gets it too).
 *
 * Names: `ping` (`{ pong: true, at }`), `set-interval` (`{ seconds }` >= 1: the reading
 * period), `reboot` (answers ok, then a new boot), `fail` (always `ok: false`); anything
 * else is `ok: false, error: "unknown command NAME"`. `handleCommand` is pure (the device
 * applies the effect it returns), so the rules are tested without a broker.
 */
import type { DeviceAnswer, DeviceCommand } from '../protocol/commands.ts'

export const COMMAND_NAMES = ['ping', 'set-interval', 'reboot', 'fail'] as const

/** What the device remembers of one command id. */
export type CommandEntry = {
  name: string
  /** Deliveries of this id (1 + redeliveries). */
  received: number
  /** Times the device executed it: 0 (expired, unknown name) or 1, never more. */
  executed: number
  /** Answers published for it (one per delivery). */
  answersSent: number
  /** The answer kept in flash; every delivery is answered with it. */
  answer: DeviceAnswer
  /** Wall-clock ms of the first delivery. */
  firstAt: number
}

/** Per device: the flash, plus messages that could not be decoded (no id: no answer possible). */
export type DeviceCommandRecord = { id: string, commands: Map<string, CommandEntry>, undecodable: number }

export type CommandEffect = { kind: 'set-interval', seconds: number } | { kind: 'reboot' } | null

export type CommandOutcome = {
  answer: DeviceAnswer
  /** True when this delivery executed the command (the first delivery of a live command). */
  executed: boolean
  /** True when the id was already in flash (answered from the stored answer). */
  redelivered: boolean
  expired: boolean
  /** What the device must do now (only when executed). */
  effect: CommandEffect
}

export class CommandFlash {
  readonly record: DeviceCommandRecord
  constructor (deviceId: string) {
    this.record = { id: deviceId, commands: new Map(), undecodable: 0 }
  }

  get (id: string): CommandEntry | undefined { return this.record.commands.get(id) }
}

function execute (cmd: DeviceCommand, now: number): { answer: DeviceAnswer, effect: CommandEffect } {
  switch (cmd.name) {
    case 'ping':
      return { answer: { id: cmd.id, ok: true, result: { pong: true, at: now } }, effect: null }
    case 'set-interval': {
      const a = cmd.args as { seconds?: unknown } | null
      const s = a !== null && typeof a === 'object' ? a.seconds : undefined
      if (typeof s !== 'number' || !Number.isFinite(s)) return { answer: { id: cmd.id, ok: false, error: 'args.seconds must be a number' }, effect: null }
      if (s < 1) return { answer: { id: cmd.id, ok: false, error: `interval below 1 s: ${s}` }, effect: null }
      return { answer: { id: cmd.id, ok: true, result: { seconds: s } }, effect: { kind: 'set-interval', seconds: s } }
    }
    case 'reboot':
      return { answer: { id: cmd.id, ok: true, result: { rebooting: true } }, effect: { kind: 'reboot' } }
    case 'fail':
      return { answer: { id: cmd.id, ok: false, error: 'failed as asked' }, effect: null }
    default:
      return { answer: { id: cmd.id, ok: false, error: `unknown command ${cmd.name}` }, effect: null }
  }
}

/**
 * One delivery of `cmd` at wall-clock `now`: records it in `flash` and returns the answer to
 * publish and the effect to apply. Executes only on the first delivery of a live command.
 */
export function handleCommand (flash: CommandFlash, cmd: DeviceCommand, now: number): CommandOutcome {
  const kept = flash.get(cmd.id)
  if (kept) {
    kept.received++
    kept.answersSent++
    return { answer: kept.answer, executed: false, redelivered: true, expired: false, effect: null }
  }
  if (cmd.expiresAt <= now) {
    const answer: DeviceAnswer = { id: cmd.id, ok: false, error: 'expired' }
    flash.record.commands.set(cmd.id, { name: cmd.name, received: 1, executed: 0, answersSent: 1, answer, firstAt: now })
    return { answer, executed: false, redelivered: false, expired: true, effect: null }
  }
  const { answer, effect } = execute(cmd, now)
  const known = (COMMAND_NAMES as readonly string[]).includes(cmd.name)
  // an unknown name is refused, not executed
  flash.record.commands.set(cmd.id, { name: cmd.name, received: 1, executed: known ? 1 : 0, answersSent: 1, answer, firstAt: now })
  return { answer, executed: known, redelivered: false, expired: false, effect }
}
