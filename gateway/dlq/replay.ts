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
import { decodeForView, isoTime, jsonSafe } from './render.ts'

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
  /**
   * the reading as decoded, JSON-safe (render.ts: values JSON cannot hold are `$`-marked
   * objects); null when it cannot be decoded
   */
  reading: unknown
  /** why `reading` is null: the bytes do not decode (the raw bytes are still there) */
  readingError?: string
  /** the stored bytes, base64 (show and export only) */
  raw?: string
}

/** The JSON view of a record; never throws, whatever the record's bytes hold. */
export function view (rec: DeadLetter, withRaw: boolean): DeadLetterView {
  try {
    return fullView(rec, withRaw)
  } catch (err) {
    // not reached by any record known: the last line of defence for one that breaks a list
    return {
      id: rec.id, at: isoTime(Number(rec.at)), atMs: Number(rec.at), kind: 'unreadable', device: null, reason: '', bytes: rec.raw.length,
      reading: null, readingError: `record ${rec.id} cannot be shown: ${err instanceof Error ? err.message : 'unknown error'}`,
      ...(withRaw ? { raw: Buffer.from(rec.raw).toString('base64') } : {})
    }
  }
}

function fullView (rec: DeadLetter, withRaw: boolean): DeadLetterView {
  const decoded = decodeForView(rec.raw, rec.kind)
  return {
    id: rec.id,
    at: isoTime(rec.at),
    atMs: rec.at,
    kind: rec.kind,
    device: rec.device,
    reason: rec.reason,
    ...(rec.topic !== undefined ? { topic: rec.topic } : {}),
    ...(rec.p !== undefined ? { p: rec.p, s: rec.s } : {}),
    bytes: rec.raw.length,
    reading: jsonSafe(decoded.value),
    ...(decoded.error !== undefined ? { readingError: decoded.error } : {}),
    ...(withRaw ? { raw: rec.raw.toString('base64') } : {})
  }
}

/**
 * One line of a list or export: the record's view, or, should even that fail, its id and
 * why, so one record never ends a list or an export stream.
 */
export function viewJson (rec: DeadLetter, withRaw: boolean): string {
  try {
    return JSON.stringify(view(rec, withRaw))
  } catch (err) {
    return JSON.stringify({ id: rec.id, renderError: `record ${rec.id} cannot be shown: ${err instanceof Error ? err.message : 'unknown error'}`, ...(withRaw ? { raw: Buffer.from(rec.raw).toString('base64') } : {}) })
  }
}
