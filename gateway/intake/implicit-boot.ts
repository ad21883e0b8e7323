/**
 * Implicit boots for devices that send `seq` without `boot` (docs/design.md,
 * "Devices without boot").
 *
 * `boot` is optional in the payload contract, but the dedup window is kept per boot: a
 * boot-less device that reboots and counts from 1 again would have its new readings
 * PUBACKed and discarded as duplicates of the old ones. A reboot always means a new MQTT
 * connection, so the rule is decided once per connection, at its first reading with a seq:
 *
 *   seq above the high-water mark of the device's current boot  -> same boot (it went on)
 *   seq at or below it, and the reading is a resend              -> same boot (dedup)
 *   seq at or below it, otherwise                                -> new implicit boot
 *
 * "A resend" is proven by the MQTT DUP flag [MQTT-3.3.1-1] or by a payload byte-identical
 * to the one this gateway received under that seq (a fingerprint kept in memory for the
 * last FINGERPRINTS readings of each boot-less device). Where neither proof is at hand
 * (the gateway restarted, or the resent seq is older than the fingerprints kept), the
 * reading opens a new implicit boot: the doubt costs a duplicate upstream, never a loss.
 *
 * The first boot of a boot-less device stays `null` (the upstream item's boot, as before);
 * a new implicit boot is the text `~` + the gateway's receive time in ms (zero-padded, so
 * boots sort in time order). It is sent upstream as the item's boot, so the ingest's
 * natural key (device, boot, seq) does not take the new readings for duplicates either.
 * The current boot of a device is the newest one in its dedup window, which is persisted,
 * so it survives restarts; the fingerprints do not.
 */
import type { Boot } from '../../protocol/index.ts'
import type { DedupWindow } from '../store/index.ts'

/** Readings fingerprinted per boot-less device (covers the unacked tail a client resends). */
export const FINGERPRINTS = 32
export const IMPLICIT_BOOT_PREFIX = '~'

export function isImplicitBoot (b: Boot | null): boolean {
  return b === null || (typeof b === 'string' && b.startsWith(IMPLICIT_BOOT_PREFIX))
}

function fingerprint (raw: Uint8Array): number {
  let h = 0x811c9dc5
  for (let i = 0; i < raw.length; i++) { h ^= raw[i]!; h = Math.imul(h, 0x01000193) }
  return (h ^ raw.length) >>> 0
}

type DeviceState = { conn: number, boot: Boot | null, seqs: number[], prints: number[], next: number }

export type ImplicitDecision = { boot: Boot | null, started: boolean, firstSeen: boolean }

export class ImplicitBoots {
  private readonly devices = new Map<string, DeviceState>()
  private lastBootMs = 0

  constructor (private readonly maxDevices: number) {}

  /**
   * The boot a boot-less reading belongs to. `conn` identifies the MQTT connection; `dup`
   * is the packet's DUP flag. Call in per-device arrival order, with the device's dedup
   * window (read only: its current implicit boot and that boot's high-water mark).
   */
  decide (device: string, conn: number, seq: number, raw: Uint8Array, dup: boolean, w: DedupWindow): ImplicitDecision {
    let st = this.devices.get(device)
    const firstSeen = st === undefined
    const print = fingerprint(raw)
    let started = false
    if (!st || st.conn !== conn) {
      const boot = st ? st.boot : w.currentImplicit(isImplicitBoot)
      const hw = w.highWater(boot)
      const resend = dup || (st !== undefined && st.boot === boot && this.printOf(st, seq) === print)
      let next = boot
      if (hw !== null && seq <= hw && !resend) { next = this.newBoot(); started = true }
      if (!st || next !== st.boot) st = { conn, boot: next, seqs: new Array<number>(FINGERPRINTS).fill(-1), prints: new Array<number>(FINGERPRINTS).fill(0), next: 0 }
      st.conn = conn
      this.devices.delete(device)
      this.devices.set(device, st)
      if (this.devices.size > this.maxDevices) this.devices.delete(this.devices.keys().next().value!)
    }
    st.seqs[st.next] = seq
    st.prints[st.next] = print
    st.next = (st.next + 1) % FINGERPRINTS
    return { boot: st.boot, started, firstSeen }
  }

  private printOf (st: DeviceState, seq: number): number | undefined {
    const i = st.seqs.lastIndexOf(seq)
    return i < 0 ? undefined : st.prints[i]
  }

  private newBoot (): string {
    // unique within this process even for two reboots in one millisecond
    const ms = Math.max(Date.now(), this.lastBootMs + 1)
    this.lastBootMs = ms
    return IMPLICIT_BOOT_PREFIX + String(ms).padStart(15, '0')
  }
}
