/**
 * Per-device anti-replay window (docs/design.md section 4, step 3), as in IPsec/DTLS: per boot a
 * high-water mark `hw` and a bitmap of the last W seqs at or below it. A seq above `hw` is
 * new; inside the window its bit decides; below the window it cannot be judged and is
 * reported as `tooOld` (the intake dead-letters it: never dropped silently).
 *
 * The two most recent boots are kept, so a late retransmit from before a reboot is still
 * recognised.
 *
 * The window is written with every group commit that touches the device, so its size is
 * write amplification: a device whose seqs arrive without gaps (the normal case) is
 * written compactly as [boot, hw, low] (every seq from max(low, hw - W + 1) to hw seen,
 * ~20 bytes); only while a gap is inside the window is the bitmap written
 * ([boot, hw, bitmap, low, gapMax], ~150 bytes).
 * Encoded state: CBOR [1, W, [window, ...], seenAtS] newest boot first; seenAtS (seconds
 * since the epoch of the last new reading, for `dedupIdleForgetMs`) is absent in windows
 * written before it existed, which are then never forgotten.
 */
import { decodeUntrusted, encodeCbor, wireUint, type Boot } from '../../protocol/index.ts'

export const DEDUP_WINDOW = 1024
const MAX_BOOTS = 2

export type DedupVerdict = 'new' | 'duplicate' | 'tooOld'

/** low: lowest seq seen; gapMax: highest seq ever skipped (-1 none) */
type BootWindow = { boot: Boot | null, hw: number, bits: Uint8Array, low: number, gapMax: number }

export class DedupWindow {
  private boots: BootWindow[] = []
  /** Cycles not yet durable that carry this state; the cache may evict it only at 0. */
  pending = 0
  /** When the device last sent a new reading (s since the epoch; 0 unknown). */
  seenAtS = 0
  /** The intake cache's last move of this window to its young end (s; not stored). */
  cacheTouchedS = -1

  constructor (readonly window = DEDUP_WINDOW) {}

  /** Checks `seq` of `boot` and, when new, records it. */
  check (boot: Boot | null, seq: number): DedupVerdict {
    let w = this.boots.find((b) => b.boot === boot)
    if (!w) {
      w = { boot, hw: seq, bits: new Uint8Array(this.window >> 3), low: seq, gapMax: -1 }
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
      if (gap > 1) w.gapMax = seq - 1
      w.hw = seq
      this.set(w, seq)
      return 'new'
    }
    if (w.hw - seq >= this.window) return 'tooOld'
    const i = seq % this.window
    if (w.bits[i >> 3]! & (1 << (i & 7))) return 'duplicate'
    if (seq < w.low) {
      if (seq < w.low - 1) w.gapMax = Math.max(w.gapMax, w.low - 1)
      w.low = seq
    }
    this.set(w, seq)
    return 'new'
  }

  /** True when the window records `seq` of `boot` as seen (read only, unlike `check`). */
  claims (boot: Boot | null, seq: number): boolean {
    const w = this.boots.find((b) => b.boot === boot)
    if (!w || seq > w.hw || w.hw - seq >= this.window) return false
    const i = seq % this.window
    return (w.bits[i >> 3]! & (1 << (i & 7))) !== 0
  }

  /** The boots the window holds, newest first: high-water mark, lowest seq seen, highest seq ever skipped (-1 none). */
  bootMarks (): Array<{ boot: Boot | null, hw: number, low: number, gapMax: number }> {
    return this.boots.map((b) => ({ boot: b.boot, hw: b.hw, low: b.low, gapMax: b.gapMax }))
  }

  /** The newest boot that is `null` or gateway-assigned (intake/implicit-boot.ts), else null. */
  currentImplicit (isImplicit: (b: Boot | null) => boolean): Boot | null {
    return this.boots.find((b) => isImplicit(b.boot))?.boot ?? null
  }

  /** The highest seq seen in `boot`, or null if the window has no such boot. */
  highWater (boot: Boot | null): number | null {
    return this.boots.find((b) => b.boot === boot)?.hw ?? null
  }

  private set (w: BootWindow, seq: number): void {
    const i = seq % this.window
    w.bits[i >> 3]! |= 1 << (i & 7)
  }

  private clear (w: BootWindow, seq: number): void {
    const i = seq % this.window
    w.bits[i >> 3]! &= ~(1 << (i & 7))
  }

  /** True when the device sent nothing new for longer than `idleS` (never for an unknown time). */
  idleSince (nowS: number, idleS: number): boolean {
    return this.seenAtS > 0 && nowS - this.seenAtS > idleS
  }

  encode (): Buffer {
    const boots = this.boots.map((b) => {
      const start = Math.max(b.low, b.hw - this.window + 1)
      if (b.gapMax < start) return [b.boot, wireUint(b.hw), wireUint(start)]
      return [b.boot, wireUint(b.hw), Buffer.from(b.bits), wireUint(b.low), b.gapMax < 0 ? -1 : wireUint(b.gapMax)]
    })
    return encodeCbor(this.seenAtS > 0 ? [1, this.window, boots, this.seenAtS] : [1, this.window, boots])
  }

  /** The time of the last new reading of an encoded window (0: unknown or unreadable). */
  static seenAtOf (buf: Uint8Array): number {
    try {
      const raw = decodeUntrusted(buf, { maxDepth: 4 }) as unknown
      return Array.isArray(raw) && Number.isSafeInteger(raw[3]) && (raw[3] as number) > 0 ? raw[3] as number : 0
    } catch {
      return 0
    }
  }

  static decode (buf: Uint8Array): DedupWindow {
    const raw = decodeUntrusted(buf, { maxDepth: 4 }) as unknown
    if (!Array.isArray(raw) || raw[0] !== 1 || typeof raw[1] !== 'number' || !Array.isArray(raw[2])) throw new Error('dedup state: unknown layout')
    const d = new DedupWindow(raw[1])
    if (raw.length > 3) {
      if (!Number.isSafeInteger(raw[3]) || (raw[3] as number) < 0) throw new Error('dedup state: bad seenAt')
      d.seenAtS = raw[3] as number
    }
    for (const b of raw[2] as unknown[]) {
      if (!Array.isArray(b) || typeof b[1] !== 'number') throw new Error('dedup state: bad boot window')
      if (b.length === 3 && typeof b[2] === 'number' && b[2] <= b[1] && b[1] - b[2] < d.window) {
        const w: BootWindow = { boot: b[0] as Boot | null, hw: b[1], bits: new Uint8Array(d.window >> 3), low: b[2], gapMax: -1 }
        for (let s = b[2]; s <= b[1]; s++) d.set(w, s)
        d.boots.push(w)
      } else if (b.length === 5 && b[2] instanceof Uint8Array && b[2].length === d.window >> 3 && typeof b[3] === 'number' && typeof b[4] === 'number') {
        d.boots.push({ boot: b[0] as Boot | null, hw: b[1], bits: new Uint8Array(b[2]), low: b[3], gapMax: b[4] })
      } else {
        throw new Error('dedup state: bad boot window')
      }
    }
    return d
  }
}
