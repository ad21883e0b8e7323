/** Per-item result codes of upstream protocol v1 (docs/design.md section 6). */
export const AckCode = { Stored: 0, Duplicate: 1, Retry: 2, Rejected: 3 } as const
export type AckCode = (typeof AckCode)[keyof typeof AckCode]

export const AckCodeName: Record<AckCode, 'stored' | 'duplicate' | 'retry' | 'rejected'> = {
  0: 'stored',
  1: 'duplicate',
  2: 'retry',
  3: 'rejected'
}

/** A result code the gateway acts on; anything else (unknown, missing) counts as retry. */
export function normalizeCode (code: unknown): AckCode {
  return code === 0 || code === 1 || code === 3 ? code : AckCode.Retry
}

/** Codes after which the gateway drops the item from its buffer. */
export function isFinal (code: AckCode): boolean {
  return code !== AckCode.Retry
}

export const PROTOCOL_VERSION = 1 as const
