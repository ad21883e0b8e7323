/**
 * Why the store could not be opened, in words a user can act on (every failure
 * used to end in "is another gateway using this --data-dir?", which sent people hunting
 * for a second process when the store belonged to another user or was corrupt).
 *
 * classic-level wraps the cause: `LEVEL_LOCKED` (the LOCK file is held: another process
 * has the store open), `LEVEL_CORRUPTION`, `LEVEL_IO_ERROR` with the OS's words
 * ("Permission denied", "Read-only file system", "No space left on device"), or the Node
 * errno of its own mkdir (EEXIST/ENOTDIR: the path is a file).
 */
import { statSync } from 'node:fs'
import { StoreError } from '../../protocol/index.ts'

export type OpenFailure = 'locked' | 'permission' | 'read-only' | 'not-a-directory' | 'corrupt' | 'no-space' | 'other'

type ErrLike = { code?: string, message?: string, cause?: unknown }

/** The deepest cause's code and message, joined with the outer ones for matching. */
function flatten (err: unknown): { codes: string[], text: string } {
  const codes: string[] = []
  const texts: string[] = []
  let e = err as ErrLike | undefined
  for (let i = 0; e && i < 5; i++) {
    if (e.code) codes.push(e.code)
    if (e.message) texts.push(e.message)
    e = e.cause as ErrLike | undefined
  }
  return { codes, text: texts.join(': ') }
}

export function classifyOpenError (err: unknown): OpenFailure {
  const { codes, text } = flatten(err)
  if (codes.includes('LEVEL_LOCKED') || /already held by process|Resource temporarily unavailable/i.test(text)) return 'locked'
  if (codes.includes('EACCES') || codes.includes('EPERM') || /Permission denied|Operation not permitted/i.test(text)) return 'permission'
  if (codes.includes('EROFS') || /Read-only file system/i.test(text)) return 'read-only'
  if (codes.includes('ENOTDIR') || codes.includes('EEXIST') || /Not a directory/i.test(text)) return 'not-a-directory'
  if (codes.includes('LEVEL_CORRUPTION') || /Corruption/i.test(text)) return 'corrupt'
  if (codes.includes('ENOSPC') || /No space left/i.test(text)) return 'no-space'
  return 'other'
}

/** The store could not be opened; `reason` says why (retryable: a lock or a full disk may clear). */
export class StoreOpenError extends StoreError {
  static override readonly code: string = 'EDGE_ERR_STORE_OPEN'
  override name = 'StoreOpenError'
  readonly reason: OpenFailure
  readonly dataDir: string
  constructor (dataDir: string, reason: OpenFailure, message: string, cause: unknown) {
    super(message, { cause, retryable: reason === 'locked' || reason === 'no-space' })
    this.reason = reason
    this.dataDir = dataDir
  }
}

function owner (dir: string): string {
  try {
    const st = statSync(dir)
    const me = process.getuid?.()
    return ` (it is owned by uid ${st.uid}${me === undefined ? '' : `, this process runs as uid ${me}`}: run the gateway as that user, or chown -R the directory)`
  } catch { return '' }
}

/** An error whose message names --data-dir and the real cause. */
export function openError (dataDir: string, err: unknown): StoreOpenError {
  const kind = classifyOpenError(err)
  const detail = flatten(err).text
  const why: Record<OpenFailure, string> = {
    locked: 'is in use by another process (its LOCK file is held: is another gateway running on this --data-dir?)',
    permission: `permission denied${owner(dataDir)}`,
    'read-only': 'is on a read-only file system',
    'not-a-directory': 'is not a directory (a file is in the way)',
    corrupt: 'holds a corrupt store; move it aside to start a new store (its unsent readings stay in the old directory)',
    'no-space': 'is on a full disk',
    other: 'cannot be opened'
  }
  return new StoreOpenError(dataDir, kind, `--data-dir ${dataDir} ${why[kind]} [${detail}]`, err)
}
