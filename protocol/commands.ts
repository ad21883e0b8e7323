/**
 * Commands to devices: the wire contract (docs/commands.md, docs/design.md section 6b).
 * Shared by the ingest (the cloud side's door), the gateway (durable at the edge, delivery
 * to devices) and the device simulator (executes once, answers from its stored result).
 *
 * Three hops, three formats:
 *
 * 1. Caller -> ingest: JSON over HTTP (`POST /v1/devices/{deviceId}/commands`, docs/commands.md).
 * 2. Ingest <-> gateway: CBOR, over HTTP or the MQTT upstream.
 *    - Down: a `CommandsMessage` `{ v: 1, commands: [WireCommand...], recalls: [Recall...] }`,
 *      the answer to the gateway's long poll `GET /v1/gateway/commands?wait=MS`, or one
 *      PUBLISH at QoS 1 on `gateways/{gatewayId}/commands`. The ingest offers a command
 *      again (next poll, or a re-publish) until the gateway reports it `at-gateway`; the
 *      gateway keeps each id once, so a repeated offer is harmless.
 *    - Up: a `ReportsRequest` `{ v: 1, gateway, batch, reports: [Report...], presence:
 *      [Presence...], snapshot? }`, `POST /v1/gateway/command-reports` or one PUBLISH on
 *      `gateways/{gatewayId}/command-reports`; answered per report by a `ReportsResponse`
 *      `{ v: 1, batch, results: [[index, code, reason?]...] }` (the HTTP 200 body, or a
 *      PUBLISH on `gateways/{gatewayId}/command-results` after the ingest's commit). Codes
 *      are the readings' (codes.ts): 0 applied, 1 duplicate (that state or a later one is
 *      already recorded), 2 retry, 3 rejected (unknown id, another device's command, a
 *      state the command cannot take): the gateway drops the report then and counts it.
 * 3. Gateway <-> device: `devices/{deviceId}/commands` (QoS 1, `DeviceCommand`, JSON unless
 *    the device publishes CBOR readings) and `devices/{deviceId}/commands/answers`
 *    (`DeviceAnswer`, JSON or CBOR: told apart by the first byte).
 *
 * Untrusted input (everything decoded here) goes through `decodeUntrusted` with limits,
 * and every refusal names the field.
 */
import { decodeUntrusted, encodeCbor, wireUint } from './cbor.ts'
import { normalizeCode, type AckCode } from './codes.ts'
import { DecodeError, ValidationError } from './errors.ts'
import { DEVICE_ID_RE } from './topics.ts'

/** Every state a command can be in, in the order it moves through them. */
export const COMMAND_STATES = ['queued', 'at-gateway', 'delivered', 'completed', 'rejected', 'expired', 'cancelled'] as const
export type CommandState = (typeof COMMAND_STATES)[number]

/** States a command never leaves. */
export const FINAL_STATES: ReadonlySet<CommandState> = new Set(['completed', 'rejected', 'expired', 'cancelled'])
export const isFinalState = (s: CommandState): boolean => FINAL_STATES.has(s)

/**
 * What a gateway may report for a command. `recalled`: the gateway gave back a command it
 * held and had not delivered (answer to a `Recall`): it deletes it and will never deliver it;
 * the ingest then routes it again (`queued`) or, for a cancel, records `cancelled`.
 */
export const REPORT_STATES = ['at-gateway', 'delivered', 'completed', 'rejected', 'expired', 'recalled'] as const
export type ReportState = (typeof REPORT_STATES)[number]

/** Command ids (made by the ingest) and names (chosen by the caller): one topic-safe pattern. */
export const COMMAND_ID_RE = /^[A-Za-z0-9._-]{1,64}$/
export const COMMAND_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/
/** The longest `error` text a device answer or a report may carry; longer ones are cut. */
export const MAX_ERROR_CHARS = 1024

/** Caps for decoding the ingest <-> gateway messages (bytes, nesting). */
export const COMMAND_MESSAGE_LIMITS = { maxBytes: 4 * 1024 * 1024, maxDepth: 16 } as const
/** Caps for decoding a device's answer. */
export const DEVICE_ANSWER_LIMITS = { maxBytes: 64 * 1024, maxDepth: 16 } as const

// ---- topics ---------------------------------------------------------------------------

export const commandsTopic = (deviceId: string): string => `devices/${deviceId}/commands`
export const answersTopic = (deviceId: string): string => `devices/${deviceId}/commands/answers`
export const gatewayCommandsTopic = (gatewayId: string): string => `gateways/${gatewayId}/commands`
export const gatewayReportsTopic = (gatewayId: string): string => `gateways/${gatewayId}/command-reports`
export const gatewayReportResultsTopic = (gatewayId: string): string => `gateways/${gatewayId}/command-results`

/** `devices/{id}/commands` -> id, `devices/{id}/commands/answers` -> id; else null. */
export function parseCommandTopic (topic: string): { deviceId: string, kind: 'commands' | 'answers' } | null {
  const m = /^devices\/([^/]+)\/commands(\/answers)?$/.exec(topic)
  if (m === null) return null
  return { deviceId: m[1]!, kind: m[2] === undefined ? 'commands' : 'answers' }
}

// ---- ingest <-> gateway ---------------------------------------------------------------

/**
 * A command as the ingest hands it to a gateway. `n`: the command's place in its device's
 * order (strictly increasing per (fleet, device)); the gateway delivers a device's commands
 * in `n` order, one at a time. Times are ms since 1970.
 */
export type WireCommand = {
  id: string
  device: string
  n: number
  name: string
  args: unknown
  createdAt: number
  expiresAt: number
}

/** Asks a gateway to give back a command it holds and has not delivered (`recalled`). */
export type Recall = { id: string, device: string, cancel: boolean }

export type CommandsMessage = { v: 1, commands: WireCommand[], recalls: Recall[] }

/**
 * One state change, `[id, device, state, at, detail?]`: `detail` is the device's result
 * (`completed`, any CBOR value) or error text (`rejected`); absent otherwise.
 */
export type Report = [id: string, device: string, state: ReportState, at: number, detail?: unknown]

/** `[device, connected, at]`: a device's session opened (1) or closed (0) at the gateway. */
export type Presence = [device: string, connected: 0 | 1, at: number]

/**
 * `snapshot`: `presence` lists every device connected at the gateway now (a gateway sends
 * one after it starts); the ingest forgets this gateway's other devices' connections.
 */
export type ReportsRequest = { v: 1, gateway: string, batch: string, reports: Report[], presence: Presence[], snapshot?: boolean }

export type ReportResult = [index: number, code: AckCode] | [index: number, code: AckCode, reason: string]
export type ReportsResponse = { v: 1, batch: string, results: ReportResult[] }

function obj (v: unknown, field: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new ValidationError(field, 'must be a map')
  return v as Record<string, unknown>
}
function text (o: Record<string, unknown>, k: string, field: string, re?: RegExp): string {
  const v = o[k]
  if (typeof v !== 'string') throw new ValidationError(`${field}.${k}`, 'must be text')
  if (re !== undefined && !re.test(v)) throw new ValidationError(`${field}.${k}`, `must match ${re}`)
  return v
}
function uint (v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ValidationError(field, 'must be a non-negative integer')
  return v
}
function list (v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) throw new ValidationError(field, 'must be an array')
  return v
}
function version (o: Record<string, unknown>, field: string): void {
  if (o.v !== 1) throw new ValidationError(`${field}.v`, `must be 1, got ${JSON.stringify(o.v)}`)
}

export function checkWireCommand (v: unknown, field: string): WireCommand {
  const o = obj(v, field)
  return {
    id: text(o, 'id', field, COMMAND_ID_RE),
    device: text(o, 'device', field, DEVICE_ID_RE),
    n: uint(o.n, `${field}.n`),
    name: text(o, 'name', field, COMMAND_NAME_RE),
    args: o.args ?? null,
    createdAt: uint(o.createdAt, `${field}.createdAt`),
    expiresAt: uint(o.expiresAt, `${field}.expiresAt`)
  }
}

export function encodeCommandsMessage (m: Omit<CommandsMessage, 'v'>): Buffer {
  return encodeCbor({
    v: 1,
    commands: m.commands.map(c => ({ id: c.id, device: c.device, n: wireUint(c.n), name: c.name, args: c.args, createdAt: wireUint(c.createdAt), expiresAt: wireUint(c.expiresAt) })),
    recalls: m.recalls.map(r => ({ id: r.id, device: r.device, cancel: r.cancel }))
  })
}

export function decodeCommandsMessage (buf: Uint8Array): CommandsMessage {
  const o = obj(decodeUntrusted(buf, COMMAND_MESSAGE_LIMITS), 'commands message')
  version(o, 'commands message')
  const commands = list(o.commands ?? [], 'commands').map((c, i) => checkWireCommand(c, `commands[${i}]`))
  const recalls = list(o.recalls ?? [], 'recalls').map((r, i) => {
    const ro = obj(r, `recalls[${i}]`)
    return { id: text(ro, 'id', `recalls[${i}]`, COMMAND_ID_RE), device: text(ro, 'device', `recalls[${i}]`, DEVICE_ID_RE), cancel: ro.cancel === true }
  })
  return { v: 1, commands, recalls }
}

export function checkReport (v: unknown, field: string): Report {
  const a = list(v, field)
  if (a.length < 4 || a.length > 5) throw new ValidationError(field, 'must be [id, device, state, at, detail?]')
  if (typeof a[0] !== 'string' || !COMMAND_ID_RE.test(a[0])) throw new ValidationError(`${field}[0]`, `id must match ${COMMAND_ID_RE}`)
  if (typeof a[1] !== 'string' || !DEVICE_ID_RE.test(a[1])) throw new ValidationError(`${field}[1]`, `device must match ${DEVICE_ID_RE}`)
  if (!(REPORT_STATES as readonly unknown[]).includes(a[2])) throw new ValidationError(`${field}[2]`, `state must be one of ${REPORT_STATES.join(', ')}`)
  const at = uint(a[3], `${field}[3]`)
  const r: Report = [a[0], a[1], a[2] as ReportState, at]
  if (a.length === 5) r.push(a[4])
  return r
}

export function checkPresence (v: unknown, field: string): Presence {
  const a = list(v, field)
  if (a.length !== 3) throw new ValidationError(field, 'must be [device, connected, at]')
  if (typeof a[0] !== 'string' || !DEVICE_ID_RE.test(a[0])) throw new ValidationError(`${field}[0]`, `device must match ${DEVICE_ID_RE}`)
  if (a[1] !== 0 && a[1] !== 1) throw new ValidationError(`${field}[1]`, 'connected must be 0 or 1')
  return [a[0], a[1], uint(a[2], `${field}[2]`)]
}

export function encodeReportsRequest (r: Omit<ReportsRequest, 'v'>): Buffer {
  return encodeCbor({
    v: 1,
    gateway: r.gateway,
    batch: r.batch,
    reports: r.reports.map(x => x.length === 5 ? [x[0], x[1], x[2], wireUint(x[3]), x[4]] : [x[0], x[1], x[2], wireUint(x[3])]),
    presence: r.presence.map(p => [p[0], p[1], wireUint(p[2])]),
    ...(r.snapshot === true ? { snapshot: true } : {})
  })
}

/** Decodes a gateway's reports; `maxReports` bounds reports and presence entries each. */
export function decodeReportsRequest (buf: Uint8Array, opts: { maxReports: number }): ReportsRequest {
  const o = obj(decodeUntrusted(buf, COMMAND_MESSAGE_LIMITS), 'reports request')
  version(o, 'reports request')
  const reports = list(o.reports ?? [], 'reports')
  const presence = list(o.presence ?? [], 'presence')
  if (reports.length > opts.maxReports) throw new ValidationError('reports', `at most ${opts.maxReports} reports per request, got ${reports.length}`)
  if (presence.length > opts.maxReports) throw new ValidationError('presence', `at most ${opts.maxReports} entries per request, got ${presence.length}`)
  return {
    v: 1,
    gateway: text(o, 'gateway', 'reports request'),
    batch: text(o, 'batch', 'reports request'),
    reports: reports.map((r, i) => checkReport(r, `reports[${i}]`)),
    presence: presence.map((p, i) => checkPresence(p, `presence[${i}]`)),
    ...(o.snapshot === true ? { snapshot: true } : {})
  }
}

export function encodeReportsResponse (r: Omit<ReportsResponse, 'v'>): Buffer {
  return encodeCbor({ v: 1, batch: r.batch, results: r.results })
}

/** Unknown codes become retry (as for readings); entries that are not `[index, code, reason?]` are skipped. */
export function decodeReportsResponse (buf: Uint8Array): ReportsResponse {
  const o = obj(decodeUntrusted(buf, COMMAND_MESSAGE_LIMITS), 'reports response')
  version(o, 'reports response')
  const results: ReportResult[] = []
  for (const e of list(o.results ?? [], 'results')) {
    if (!Array.isArray(e) || typeof e[0] !== 'number' || !Number.isSafeInteger(e[0]) || e[0] < 0) continue
    const code = normalizeCode(e[1])
    results.push(typeof e[2] === 'string' ? [e[0], code, e[2]] : [e[0], code])
  }
  return { v: 1, batch: typeof o.batch === 'string' ? o.batch : '', results }
}

// ---- gateway <-> device ---------------------------------------------------------------

/** What a device receives on `devices/{id}/commands`. */
export type DeviceCommand = { id: string, name: string, args: unknown, expiresAt: number }

/** What a device answers on `devices/{id}/commands/answers`. */
export type DeviceAnswer = { id: string, ok: true, result: unknown } | { id: string, ok: false, error: string }

export type PayloadFormat = 'json' | 'cbor'

export function encodeDeviceCommand (c: DeviceCommand, format: PayloadFormat): Buffer {
  const body = { id: c.id, name: c.name, args: c.args ?? null, expiresAt: c.expiresAt }
  return format === 'cbor' ? encodeCbor({ ...body, expiresAt: wireUint(c.expiresAt) }) : Buffer.from(JSON.stringify(body))
}

/** JSON when the first non-blank byte is `{`, CBOR otherwise. */
export function sniffFormat (buf: Uint8Array): PayloadFormat {
  for (const b of buf) {
    if (b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d) continue
    return b === 0x7b ? 'json' : 'cbor'
  }
  return 'json'
}

function decodeAny (buf: Uint8Array, what: string, limits: { maxBytes: number, maxDepth: number }): unknown {
  if (buf.length > limits.maxBytes) throw new DecodeError(`${what} of ${buf.length} bytes is over the limit of ${limits.maxBytes}`)
  if (sniffFormat(buf) === 'json') {
    try {
      return JSON.parse(Buffer.from(buf.buffer, buf.byteOffset, buf.length).toString('utf8'))
    } catch (err) {
      throw new DecodeError(`${what}: malformed JSON: ${(err as Error).message}`, { cause: err })
    }
  }
  return decodeUntrusted(buf, limits)
}

export function decodeDeviceCommand (buf: Uint8Array): DeviceCommand {
  const o = obj(decodeAny(buf, 'command', COMMAND_MESSAGE_LIMITS), 'command')
  return { id: text(o, 'id', 'command', COMMAND_ID_RE), name: text(o, 'name', 'command', COMMAND_NAME_RE), args: o.args ?? null, expiresAt: uint(o.expiresAt, 'command.expiresAt') }
}

export function encodeDeviceAnswer (a: DeviceAnswer, format: PayloadFormat): Buffer {
  const body = a.ok ? { id: a.id, ok: true, result: a.result ?? null } : { id: a.id, ok: false, error: a.error }
  return format === 'cbor' ? encodeCbor(body) : Buffer.from(JSON.stringify(body))
}

/** Decodes and checks a device's answer; the error names the field. */
export function decodeDeviceAnswer (buf: Uint8Array): DeviceAnswer {
  const o = obj(decodeAny(buf, 'answer', DEVICE_ANSWER_LIMITS), 'answer')
  const id = text(o, 'id', 'answer', COMMAND_ID_RE)
  if (o.ok === true) return { id, ok: true, result: o.result ?? null }
  if (o.ok === false) {
    const e = o.error
    const error = typeof e === 'string' ? e : e === undefined ? '' : JSON.stringify(e)
    return { id, ok: false, error: error.slice(0, MAX_ERROR_CHARS) }
  }
  throw new ValidationError('answer.ok', 'must be true or false')
}
