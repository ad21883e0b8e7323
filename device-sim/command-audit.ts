/**
 * The command audit: compares what the driver created (command-driver.ts), what the ingest
 * says became of each (`GET /v1/commands/{id}`) and what the devices recorded in their
 * flash (commands.ts).
 *
 * FAILURES:
 * - `lost`: a created command the ingest does not know (404), or one not in a final state
 *   after the bounded wait (a command must end, by an answer or by its TTL);
 * - `badHistory`: the history holds no final state, more than one, or a final state other
 *   than the current one;
 * - `resultMismatch`: `completed` with a result that is not the device's stored answer (or
 *   no `ok: true` answer on the device at all); `rejected` with an error the device's stored
 *   answer does not have (a `rejected` with no device answer is one too);
 * - `executedTwice`: a device executed an id more than once (any id, this run's or not);
 * - `idempotencyMismatch`: a second POST with the same Idempotency-Key named another id.
 *
 * Allowed and counted: redeliveries (same id delivered again, answered from flash),
 * `expired` (not delivered or not answered before `expiresAt`), `cancelled`.
 *
 * `auditCommands` is pure; `fetchCommandViews` is the HTTP half.
 */
import { FINAL_STATES, type CommandState } from '../protocol/commands.ts'
import type { CommandView, SentCommand } from './command-driver.ts'
import type { DeviceCommandRecord } from './commands.ts'

export type CommandAuditCounts = {
  created: number
  completed: number
  rejected: number
  expired: number
  cancelled: number
  /** Failures, see the header. */
  lost: number
  badHistory: number
  resultMismatch: number
  executedTwice: number
  idempotencyMismatch: number
  /** From the devices: deliveries, of which redeliveries, and executions. */
  deliveries: number
  redeliveries: number
  executions: number
  /** Ids the devices got that this driver did not create (another caller, an earlier run). */
  foreign: number
}

export type CommandFailure = { id: string, device: string, kind: keyof CommandAuditCounts, detail: string }

export type CommandAuditResult = { ok: boolean, counts: CommandAuditCounts, failures: CommandFailure[] }

const MAX_LISTED = 50

/** JSON with sorted keys: a result that went through CBOR and back may reorder nothing, but need not. */
function canonical (v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'undefined'
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`
  const o = v as Record<string, unknown>
  return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`
}

export function isCommandFailure (c: CommandAuditCounts): boolean {
  return c.lost > 0 || c.badHistory > 0 || c.resultMismatch > 0 || c.executedTwice > 0 || c.idempotencyMismatch > 0
}

/**
 * `views`: the ingest's view of each created id (null: it answered 404). Commands the map
 * lacks were not fetched and count as lost.
 */
export function auditCommands (sent: readonly Pick<SentCommand, 'id' | 'device' | 'repeated' | 'repeatId'>[], views: ReadonlyMap<string, CommandView | null>, devices: readonly DeviceCommandRecord[]): CommandAuditResult {
  const c: CommandAuditCounts = { created: sent.length, completed: 0, rejected: 0, expired: 0, cancelled: 0, lost: 0, badHistory: 0, resultMismatch: 0, executedTwice: 0, idempotencyMismatch: 0, deliveries: 0, redeliveries: 0, executions: 0, foreign: 0 }
  const failures: CommandFailure[] = []
  const fail = (id: string, device: string, kind: keyof CommandAuditCounts, detail: string): void => {
    c[kind]++
    if (failures.length < MAX_LISTED) failures.push({ id, device, kind, detail })
  }
  const byDevice = new Map(devices.map((d) => [d.id, d]))
  const ours = new Set(sent.map((s) => s.id))
  for (const d of devices) {
    for (const [id, e] of d.commands) {
      c.deliveries += e.received
      c.redeliveries += e.received - 1
      c.executions += e.executed
      if (e.executed > 1) fail(id, d.id, 'executedTwice', `${e.name} executed ${e.executed} times`)
      if (!ours.has(id)) c.foreign++
    }
  }
  for (const s of sent) {
    if (s.repeated && s.repeatId !== s.id) fail(s.id, s.device, 'idempotencyMismatch', `the repeated POST answered ${s.repeatId ?? 'no id'}`)
    const v = views.get(s.id)
    if (v === undefined || v === null) { fail(s.id, s.device, 'lost', v === null ? 'the ingest does not know it (404)' : 'never read from the ingest'); continue }
    if (!FINAL_STATES.has(v.state)) { fail(s.id, s.device, 'lost', `still ${v.state} after the wait`); continue }
    const finals = (v.history ?? []).filter((h) => FINAL_STATES.has(h.state as CommandState))
    if (finals.length !== 1 || finals[0]!.state !== v.state) {
      fail(s.id, s.device, 'badHistory', `state ${v.state}, final states in history: ${finals.map((h) => h.state).join(', ') || 'none'}`)
      continue
    }
    const st = v.state as 'completed' | 'rejected' | 'expired' | 'cancelled'
    c[st]++
    const entry = byDevice.get(s.device)?.commands.get(s.id)
    if (st === 'completed') {
      if (!entry || !entry.answer.ok) fail(s.id, s.device, 'resultMismatch', entry ? `completed, but the device answered ok: false (${entry.answer.ok ? '' : entry.answer.error})` : 'completed, but the device never got it')
      else if (canonical(entry.answer.result) !== canonical(v.result)) fail(s.id, s.device, 'resultMismatch', `ingest result ${canonical(v.result)} != device answer ${canonical(entry.answer.result)}`)
    } else if (st === 'rejected') {
      if (!entry || entry.answer.ok) fail(s.id, s.device, 'resultMismatch', entry ? 'rejected, but the device answered ok: true' : 'rejected, but the device never got it')
      else if (entry.answer.error !== v.error) fail(s.id, s.device, 'resultMismatch', `ingest error ${JSON.stringify(v.error)} != device answer ${JSON.stringify(entry.answer.error)}`)
    }
  }
  return { ok: !isCommandFailure(c), counts: c, failures }
}

/** GET /v1/commands/{id} for each id, `concurrency` at a time; 404 -> null. Throws when the ingest cannot be read. */
export async function fetchCommandViews (ingestUrl: string, ids: readonly string[], opts: { token?: string | undefined, fetch?: typeof fetch, concurrency?: number } = {}): Promise<Map<string, CommandView | null>> {
  const f = opts.fetch ?? fetch
  const base = ingestUrl.replace(/\/+$/, '')
  const out = new Map<string, CommandView | null>()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < ids.length) {
      const id = ids[next++]!
      const url = `${base}/v1/commands/${encodeURIComponent(id)}`
      let lastErr = ''
      for (let attempt = 0; attempt < 3; attempt++) {
        try {
          const res = await f(url, { headers: opts.token !== undefined ? { authorization: `Bearer ${opts.token}` } : {}, signal: AbortSignal.timeout(15_000) })
          const text = await res.text()
          if (res.status === 404) { out.set(id, null); lastErr = ''; break }
          if (res.ok) { out.set(id, JSON.parse(text) as CommandView); lastErr = ''; break }
          lastErr = `GET ${url}: HTTP ${res.status} ${text.slice(0, 200)}`
          if (res.status < 500 && res.status !== 429) break
        } catch (err) { lastErr = `GET ${url}: ${(err as Error).message}` }
        await new Promise((resolve) => setTimeout(resolve, 250 * (attempt + 1)))
      }
      if (lastErr) throw new Error(lastErr)
    }
  }
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 16, Math.max(1, ids.length)) }, worker))
  return out
}

export function formatCommandAudit (a: CommandAuditResult): string {
  const c = a.counts
  const lines = [
    `command audit: ${a.ok ? 'PASS' : 'FAIL'} (${c.created} commands created)`,
    `  final: completed ${c.completed}  rejected ${c.rejected}  expired ${c.expired}  cancelled ${c.cancelled}`,
    `  lost ${c.lost}  bad history ${c.badHistory}  result mismatch ${c.resultMismatch}  executed twice ${c.executedTwice}  idempotency mismatch ${c.idempotencyMismatch}`,
    `  devices: deliveries ${c.deliveries} (redeliveries ${c.redeliveries})  executions ${c.executions}  ids from elsewhere ${c.foreign}`
  ]
  for (const f of a.failures.slice(0, 10)) lines.push(`  ${f.kind} ${f.id} (${f.device}): ${f.detail}`)
  return lines.join('\n')
}
