/**
 * The LevelDB sink's use of group commit (common/group-commit.ts, shared with the gateway
 * store): requests that arrive while a write is in progress are written together in the
 * next write, so N concurrent batches cost one fsync, not N.
 *
 * A submission resolves only when the write holding it (and so every earlier one) is
 * durable. If a write fails, it and every submission queued behind it are rejected: their
 * in-memory effects were computed on top of the failed one, so none of them may be
 * acknowledged. `onFailure` runs before the rejections so the owner can drop that
 * in-memory state first.
 */
import { GroupCommit } from '../../common/index.ts'

export type Op = { type: 'put', key: string, value: string } | { type: 'del', key: string }

type Waiter = { resolve: () => void, reject: (err: unknown) => void }
type Group = { ops: Op[], waiters: Waiter[], t0: bigint }

export class GroupCommitter {
  private readonly gc: GroupCommit<Group>

  constructor (
    /** Writes one group; `finalOps` are appended by the owner (e.g. the counters snapshot). */
    write: (ops: Op[]) => Promise<void>,
    finalOps: () => Op[],
    onFailure: (err: unknown) => void,
    onGroup: (submissions: number, ops: number, seconds: number) => void = () => {}
  ) {
    this.gc = new GroupCommit<Group>({
      create: () => ({ ops: [], waiters: [], t0: 0n }),
      empty: (g) => g.waiters.length === 0,
      write: async (g) => {
        for (const op of finalOps()) g.ops.push(op)
        g.t0 = process.hrtime.bigint()
        await write(g.ops)
      },
      settle: (g, err, behind) => {
        if (err) {
          onFailure(err)
          for (const w of g.waiters) w.reject(err)
          for (const w of behind?.waiters ?? []) w.reject(err)
          return
        }
        onGroup(g.waiters.length, g.ops.length, Number(process.hrtime.bigint() - g.t0) / 1e9)
        for (const w of g.waiters) w.resolve()
      }
    })
  }

  submit (ops: readonly Op[]): Promise<void> {
    const g = this.gc.current
    for (const op of ops) g.ops.push(op)
    const p = new Promise<void>((resolve, reject) => { g.waiters.push({ resolve, reject }) })
    this.gc.schedule()
    return p
  }

  /** Resolves when nothing is queued or being written. */
  idle (): Promise<void> {
    return this.gc.idle()
  }
}
