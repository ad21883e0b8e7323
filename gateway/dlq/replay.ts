/**
 * Re-validation of a dead-letter record before it is queued again, and its JSON view.
 *
 * - `item` (rejected upstream, or a poison item): the stored wire item is validated again
 *   like any item the ingest receives; it is re-queued with the original device, seq,
 *   boot, ts and receive time under a NEW (partition, seq): the old pair was answered
 *   upstream and is never sent again.
 * - `payload` (invalid at intake) and `too-old` (below the dedup window): the raw MQTT
 *   payload is decoded and validated again with the gateway's current limits; the receive
 *   time is the time it was dead-lettered.
 * A record that still fails stays where it is, with the reason it fails now.
 */
import { decodeReading, decodeUntrusted, isValidDeviceId, validateItem, type Boot, type Values } from '../../protocol/index.ts'
import type { DeadLetter } from '../store/dlq-reader.ts'

export type Requeue = { device: string, seq: number | null, boot: Boot | null, ts: number | null, rx: number, values: Values }

export function revalidate (rec: DeadLetter, maxPayloadBytes: number): { ok: true, item: Requeue } | { ok: false, reason: string } {
  try {
    if (rec.kind === 'item') {
      const [, , device, seq, boot, ts, rx, values] = validateItem(decodeUntrusted(rec.raw, { maxDepth: 4, maxItems: 4096 }))
      return { ok: true, item: { device, seq, boot, ts, rx, values } }
    }
    if (rec.kind === 'payload' || rec.kind === 'too-old') {
      if (rec.device === null || !isValidDeviceId(rec.device)) return { ok: false, reason: 'no valid device id recorded' }
      const r = decodeReading(rec.raw, maxPayloadBytes)
      return { ok: true, item: { device: rec.device, seq: r.seq, boot: r.boot, ts: r.ts, rx: rec.at, values: r.values } }
    }
    return { ok: false, reason: `a ${rec.kind} record cannot be replayed` }
  } catch (err) {
    return { ok: false, reason: (err as Error).message }
  }
}

export type DeadLetterView = {
  id: number
  at: string
  atMs: number
  kind: string
  device: string | null
  reason: string
  topic?: string
  p?: number
  s?: number
  bytes: number
  /** the reading as decoded (null when it cannot be decoded) */
  reading: unknown
  /** the stored bytes, base64 (show and export only) */
  raw?: string
}

export function view (rec: DeadLetter, withRaw: boolean): DeadLetterView {
  return {
    id: rec.id,
    at: new Date(rec.at).toISOString(),
    atMs: rec.at,
    kind: rec.kind,
    device: rec.device,
    reason: rec.reason,
    ...(rec.topic !== undefined ? { topic: rec.topic } : {}),
    ...(rec.p !== undefined ? { p: rec.p, s: rec.s } : {}),
    bytes: rec.raw.length,
    reading: decodeForView(rec),
    ...(withRaw ? { raw: rec.raw.toString('base64') } : {})
  }
}

function decodeForView (rec: DeadLetter): unknown {
  try {
    if (rec.raw.length === 0) return null
    const first = rec.raw.find((b) => b !== 0x20 && b !== 0x0a && b !== 0x0d && b !== 0x09)
    if (first === 0x7b) return JSON.parse(rec.raw.toString('utf8')) as unknown
    const v = decodeUntrusted(rec.raw, { maxDepth: 6, maxItems: 4096 })
    if (rec.kind === 'item' && Array.isArray(v) && v.length === 8) {
      const [p, s, device, seq, boot, ts, rx, values] = v as unknown[]
      return { p, s, device, seq, boot, ts, rx, values: values instanceof Map ? Object.fromEntries(values) : values }
    }
    return v instanceof Uint8Array ? { bytes: Buffer.from(v).toString('base64') } : v
  } catch {
    return null
  }
}
