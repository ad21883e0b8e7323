/**
 * Durable command records in the gateway's LevelDB (`k!{commandId}`, store/keys.ts), one
 * CBOR map per command:
 *
 *   { c: WireCommand, t: [[state, at, detail?]...], r: reported }
 *
 * `t` is every state change the gateway made (its first is `at-gateway`), `r` how many of
 * them the ingest acknowledged (answered applied, duplicate or rejected). The outbox of
 * reports is `t.slice(r)` of every record, in order per command: it is on disk, so it
 * survives kill -9. A record whose last state is final (`completed`, `rejected`, `expired`,
 * `recalled`) and fully reported is a tombstone: kept until a minute past its `expiresAt` (a late repeated
 * offer of its id is then ignored, not delivered again), then deleted. A `recalled` record
 * is deleted as soon as its report is acknowledged (the ingest may route the command back
 * here later).
 *
 * Memory holds every record (bounded by `--commands-max-held`); a change is applied to
 * memory at once and written in the background, group-committed (one LevelDB batch for
 * whatever changed while the previous write ran), with `sync: true` under
 * `--durability power`. `persist()` resolves once every change made before it is durable;
 * `durable` on a record counts its changes on disk, and only those are reported.
 */
import type { Logger } from 'pino'
import { decodeUntrusted, encodeCbor, wireUint } from '../../protocol/cbor.ts'
import { checkWireCommand, REPORT_STATES, type ReportState, type WireCommand } from '../../protocol/commands.ts'
import type { Db } from '../store/db.ts'
import { K } from '../store/keys.ts'

/** What a gateway's command can be in: the report states (`at-gateway` first). */
export type GatewayCommandState = ReportState
export const GATEWAY_FINAL: ReadonlySet<GatewayCommandState> = new Set(['completed', 'rejected', 'expired', 'recalled'])

export type Transition = [state: GatewayCommandState, at: number, detail?: unknown]

export type CommandRecord = {
  cmd: WireCommand
  t: Transition[]
  /** transitions the ingest acknowledged */
  reported: number
  /** transitions on disk */
  durable: number
}

export const stateOf = (r: CommandRecord): GatewayCommandState => r.t[r.t.length - 1]![0]
export const isFinished = (r: CommandRecord): boolean => GATEWAY_FINAL.has(stateOf(r))
/** Finished and every change acknowledged. */
export const isTombstone = (r: CommandRecord): boolean => isFinished(r) && r.reported >= r.t.length

const LIMITS = { maxBytes: 8 * 1024 * 1024, maxDepth: 32 }

export function encodeCommandRecord (r: CommandRecord): Buffer {
  const c = r.cmd
  return encodeCbor({
    c: { id: c.id, device: c.device, n: wireUint(c.n), name: c.name, args: c.args, createdAt: wireUint(c.createdAt), expiresAt: wireUint(c.expiresAt) },
    t: r.t.map((x) => x.length === 3 ? [x[0], wireUint(x[1]), x[2]] : [x[0], wireUint(x[1])]),
    r: r.reported
  })
}

/** Decodes a record (throws with the field on anything unexpected: `gateway check` says it). */
export function decodeCommandRecord (v: Uint8Array): CommandRecord {
  const o = decodeUntrusted(v, LIMITS) as { c?: unknown, t?: unknown, r?: unknown } | null
  if (o === null || typeof o !== 'object') throw new Error('command record: not a map')
  const cmd = checkWireCommand(o.c, 'command record.c')
  if (!Array.isArray(o.t) || o.t.length === 0) throw new Error('command record.t: must be a non-empty array')
  const t = o.t.map((x: unknown, i): Transition => {
    if (!Array.isArray(x) || x.length < 2 || !(REPORT_STATES as readonly unknown[]).includes(x[0]) || typeof x[1] !== 'number') throw new Error(`command record.t[${i}]: must be [state, at, detail?]`)
    return x.length >= 3 ? [x[0] as GatewayCommandState, x[1], x[2]] : [x[0] as GatewayCommandState, x[1]]
  })
  const reported = o.r
  if (typeof reported !== 'number' || !Number.isSafeInteger(reported) || reported < 0 || reported > t.length) throw new Error('command record.r: must be an integer within the transitions')
  return { cmd, t, reported, durable: t.length }
}

type Waiter = { resolve: () => void, reject: (err: Error) => void }

export class CommandStore {
  readonly records = new Map<string, CommandRecord>()
  private readonly byDevice = new Map<string, Map<string, CommandRecord>>()
  private readonly dirty = new Map<string, CommandRecord | null>()
  private waiters: Waiter[] = []
  private writing: Promise<void> | null = null
  private failure: Error | null = null

  constructor (private readonly db: Db, private readonly sync: boolean, private readonly log: Logger) {}

  /** Reads every record (at start). Unreadable ones are logged and left alone (`gateway check` names them). */
  async load (): Promise<void> {
    for await (const [k, v] of this.db.iterator(K.all('command'))) {
      try {
        const r = decodeCommandRecord(v)
        this.index(r)
      } catch (err) {
        this.log.error({ key: k, err: (err as Error).message }, 'command record unreadable; left on disk')
      }
    }
  }

  get writeFailure (): Error | null { return this.failure }

  /** Marks a record changed (or, with `null`, deleted): written by the next `persist`. */
  put (r: CommandRecord): void {
    this.index(r)
    this.dirty.set(r.cmd.id, r)
  }

  delete (id: string): void {
    const r = this.records.get(id)
    this.records.delete(id)
    if (r) {
      const m = this.byDevice.get(r.cmd.device)
      m?.delete(id)
      if (m?.size === 0) this.byDevice.delete(r.cmd.device)
    }
    this.dirty.set(id, null)
  }

  /** The records of one device. */
  ofDevice (device: string): Iterable<CommandRecord> {
    return this.byDevice.get(device)?.values() ?? []
  }

  private index (r: CommandRecord): void {
    this.records.set(r.cmd.id, r)
    let m = this.byDevice.get(r.cmd.device)
    if (!m) { m = new Map(); this.byDevice.set(r.cmd.device, m) }
    m.set(r.cmd.id, r)
  }

  /** Resolves once every change made so far is durable; rejects when its write failed. */
  persist (): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject })
      this.kick()
    })
  }

  private kick (): void {
    if (this.writing !== null) return
    if (this.dirty.size === 0 && this.waiters.length === 0) return
    const changes = [...this.dirty]
    this.dirty.clear()
    const waiters = this.waiters
    this.waiters = []
    const lengths = changes.map(([, r]) => r === null ? 0 : r.t.length)
    const ops = changes.map(([id, r]) => r === null
      ? { type: 'del' as const, key: K.command(id) }
      : { type: 'put' as const, key: K.command(id), value: encodeCommandRecord(r) })
    this.writing = (async () => {
      await Promise.resolve() // `writing` is set before this body can clear it
      try {
        if (ops.length) await this.db.batch(ops, { sync: this.sync })
        changes.forEach(([, r], i) => { if (r !== null && r.durable < lengths[i]!) r.durable = lengths[i]! })
        for (const w of waiters) w.resolve()
      } catch (err) {
        this.failure = err as Error
        this.log.error({ err }, 'command store write failed')
        // written again by the next persist
        for (const [id, r] of changes) if (!this.dirty.has(id)) this.dirty.set(id, r)
        for (const w of waiters) w.reject(err as Error)
      } finally {
        this.writing = null
      }
      if (this.waiters.length) this.kick()
    })()
  }

  /** Waits for the write in progress and any queued. */
  async drain (): Promise<void> {
    while (this.writing !== null) await this.writing
  }
}

/** Every record of a store on disk (a stopped gateway's: `gateway commands list`). */
export async function readCommandRecords (db: Db): Promise<{ records: CommandRecord[], unreadable: string[] }> {
  const records: CommandRecord[] = []
  const unreadable: string[] = []
  for await (const [k, v] of db.iterator(K.all('command'))) {
    try { records.push(decodeCommandRecord(v)) } catch { unreadable.push(K.idOfCommand(k)) }
  }
  return { records, unreadable }
}
