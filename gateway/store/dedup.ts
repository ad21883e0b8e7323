/**
 * Per-device anti-replay window (DESIGN.md section 4, step 3), as in IPsec/DTLS: per boot a
 * high-water mark `hw` and a bitmap of the last W seqs at or below it. A seq above `hw` is
 * new; inside the window its bit decides; below the window it cannot be judged and is
 * reported as `tooOld` (the intake dead-letters it: never dropped silently).
 *
 * The two most recent boots are kept, so a late retransmit from before a reboot is still
 * recognised. Encoded state: CBOR [1, W, [[boot, hw, bitmap], ...]] newest boot first.
 */
import { decodeUntrusted, encodeCbor, type Boot } from '../../protocol/index.ts'

export const DEDUP_WINDOW = 1024
const MAX_BOOTS = 2

export type DedupVerdict = 'new' | 'duplicate' | 'tooOld'

type BootWindow = { boot: Boot | null, hw: number, bits: Uint8Array }

export class DedupWindow {
  private boots: BootWindow[] = []
  /** Cycles not yet durable that carry this state; the cache may evict it only at 0. */
  pending = 0

  constructor (readonly window = DEDUP_WINDOW) {}

  /** Checks `seq` of `boot` and, when new, records it. */
  check (boot: Boot | null, seq: number): DedupVerdict {
    let w = this.boots.find((b) => b.boot === boot)
    if (!w) {
      w = { boot, hw: seq, bits: new Uint8Array(this.window >> 3) }
      this.set(w, seq)
      this.boots.unshift(w)
      if (this.boots.length > MAX_BOOTS) this.boots.length = MAX_BOOTS
      return 'new'
    }
    if (this.boots[0] !== w && seq > w.hw) {
      // the device went back to an older boot id and moved on: make it current again
      this.boots.splice(this.boots.indexOf(w), 1)
      this.boots.unshift(w)
    }
    if (seq > w.hw) {
      const gap = seq - w.hw
      if (gap >= this.window) w.bits.fill(0)
      else for (let s = w.hw + 1; s < seq; s++) this.clear(w, s)
      w.hw = seq
      this.set(w, seq)
      return 'new'
    }
    if (w.hw - seq >= this.window) return 'tooOld'
    const i = seq % this.window
    if (w.bits[i >> 3]! & (1 << (i & 7))) return 'duplicate'
    this.set(w, seq)
    return 'new'
  }

  private set (w: BootWindow, seq: number): void {
    const i = seq % this.window
    w.bits[i >> 3]! |= 1 << (i & 7)
  }

  private clear (w: BootWindow, seq: number): void {
    const i = seq % this.window
    w.bits[i >> 3]! &= ~(1 << (i & 7))
  }

  encode (): Buffer {
    return encodeCbor([1, this.window, this.boots.map((b) => [b.boot, b.hw > 0xffffffff ? BigInt(b.hw) : b.hw, Buffer.from(b.bits)])])
  }

  static decode (buf: Uint8Array): DedupWindow {
    const raw = decodeUntrusted(buf, { maxDepth: 4 }) as unknown
    if (!Array.isArray(raw) || raw[0] !== 1 || typeof raw[1] !== 'number' || !Array.isArray(raw[2])) throw new Error('dedup state: unknown layout')
    const d = new DedupWindow(raw[1])
    for (const b of raw[2] as unknown[]) {
      if (!Array.isArray(b) || typeof b[1] !== 'number' || !(b[2] instanceof Uint8Array) || b[2].length !== raw[1] >> 3) throw new Error('dedup state: bad boot window')
      d.boots.push({ boot: b[0] as Boot | null, hw: b[1], bits: new Uint8Array(b[2]) })
    }
    return d
  }
}
