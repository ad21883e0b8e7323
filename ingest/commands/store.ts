/**
 * Where the ingest keeps commands (docs/commands.md): the storage contract both command
 * stores implement, the LevelDB one (`leveldb-store.ts`, its own database under the ingest's
 * data dir) and the PostgreSQL one (`postgres-store.ts`, tables beside the readings). The
 * state machine, routing and limits are not here: `index.ts` (`Commands`) decides, a store
 * only keeps records atomically and durably. Every method that writes resolves only when the
 * write is durable (LevelDB `sync: true`, PostgreSQL COMMIT with fsync on), so an answer
 * given after it survives kill -9 and power loss. Both stores pass one contract suite
 * (test/integration/command-store-contract.ts).
 */
import type { CommandState, WireCommand } from '../../protocol/commands.ts'

/** One state a command took, and when (ms since 1970); `gateway`: the gateway that reported it, if one did. */
export type HistoryEntry = { state: CommandState, at: number, gateway?: string }

/**
 * A command as the ingest keeps it: what a gateway is handed (`WireCommand`: id, device, its
 * order `n` among the device's commands, per fleet and device from 1, name, args, times) and
 * its fate.
 */
export type CommandRecord = WireCommand & {
  /** fleet of the caller's command token; the command is routed only through this fleet's gateways */
  fleet: string
  /** time of the last change of any field; the reconciliation feed is ordered by (updatedAt, id) */
  updatedAt: number
  state: CommandState
  /** the gateway the command is routed to or held by; null while no gateway of the fleet has seen the device */
  gateway: string | null
  /** a recall asked of `gateway` and not yet answered: give it back to route it elsewhere, or to cancel it */
  recall: 'move' | 'cancel' | null
  result?: unknown
  error?: string
  history: HistoryEntry[]
  /** the caller's `Idempotency-Key`, if it sent one, and the fingerprint of the request that created the command */
  idempotencyKey?: string
  fingerprint?: string
}

export type NewCommand = Omit<CommandRecord, 'n' | 'updatedAt'>

/** A gateway's word on a device: connected or not at `at` (the gateway's clock); `seenAt`: when the ingest last heard from that gateway (its clock). */
export type PresenceEntry = { gateway: string, connected: boolean, at: number, seenAt: number }

export type CommandQuery = {
  /** undefined: every fleet */
  fleet?: string
  device?: string
  state?: CommandState
  /** only commands with updatedAt >= since */
  since?: number
  /** opaque, from a previous page's `next` */
  cursor?: string
  limit: number
}

export type CommandPage = { commands: CommandRecord[], next: string | null }

export interface CommandStore {
  readonly kind: string
  /**
   * Stores a new command, giving it the next `n` of its (fleet, device). When `idempotencyKey`
   * is set and a command of the same fleet was created with it, nothing is written and that
   * command is returned with `created: false` (the caller compares fingerprints). Atomic: two
   * concurrent creates with one key make one command.
   */
  create (c: NewCommand): Promise<{ record: CommandRecord, created: boolean }>
  get (id: string): Promise<CommandRecord | null>
  /**
   * Read-modify-write of some commands in one durable transaction: `change` gets the current
   * records (null for an unknown id) and returns what to store, position by position (the
   * same object or null: leave it as it is). Updates of one command never interleave (LevelDB:
   * one process, serialised; PostgreSQL: `SELECT ... FOR UPDATE`), so `change` may decide
   * from what it sees. Resolves with the records as stored.
   */
  update (ids: readonly string[], change: (current: readonly (CommandRecord | null)[]) => readonly (CommandRecord | null)[]): Promise<(CommandRecord | null)[]>
  /** Commands not in a final state routed to `gateway`, by device then n, at most `limit`. */
  openForGateway (gateway: string, limit: number): Promise<CommandRecord[]>
  /** Commands of a device not in a final state, by n. */
  openForDevice (fleet: string, device: string): Promise<CommandRecord[]>
  /** Commands not in a final state whose expiresAt <= now, at most `limit`. */
  dueForExpiry (now: number, limit: number): Promise<CommandRecord[]>
  /** The reconciliation feed, ordered by (updatedAt, id). */
  list (q: CommandQuery): Promise<CommandPage>
  /** How many commands are in each state now. */
  counts (): Promise<Record<CommandState, number>>
  /**
   * Records what a gateway of `fleet` said about devices: `snapshot` true replaces all this
   * gateway's entries (devices it no longer lists become not connected); `seenAt` is the
   * ingest's time. An entry whose `at` is older than the one held is ignored.
   */
  setPresence (fleet: string, gateway: string, entries: readonly { device: string, connected: boolean, at: number }[], snapshot: boolean, seenAt: number): Promise<void>
  /** Marks that a gateway was heard from (a poll, a reports request) without changing its entries. */
  touchGateway (gateway: string, seenAt: number): Promise<void>
  /** Every gateway's entry for a device of a fleet. */
  presenceOf (fleet: string, device: string): Promise<PresenceEntry[]>
  close (): Promise<void>
}
