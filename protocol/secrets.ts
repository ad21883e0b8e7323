/**
 * The one length rule for secrets an operator chooses: gateway tokens of
 * the ingest (`--token GATEWAY:SECRET`, `--tokens-file`), read tokens, the gateway's
 * upstream `--token`/`--token-file` (the same secret), `--admin-token`/`--admin-token-file`
 * and passwords set with `gateway passwd`. 16 characters: a random one from base64 or hex
 * is 64 to 96 bits, beyond online guessing even without the ingest's 401 back-off; a short
 * word is not. Pure: callers wrap the reason in their own error naming the flag or file.
 */
export const MIN_SECRET_CHARS = 16

/** Null when `secret` is acceptable, else why not (to follow "the secret of X ..."). */
export function secretProblem (secret: string): string | null {
  if (/\s/.test(secret)) return 'must not contain spaces'
  if ([...secret].length < MIN_SECRET_CHARS) return `must be at least ${MIN_SECRET_CHARS} characters (got ${[...secret].length}; e.g. \`openssl rand -base64 24\`)`
  return null
}
