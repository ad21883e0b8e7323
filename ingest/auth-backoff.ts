/**
 * Per-address back-off of failed authentication at the ingest (against token guessing), the same
 * mechanism as the gateway's MQTT login back-off (gateway/broker/login-guard.ts): after
 * `freeFailures` wrong tokens from one address, each further wrong token bans the address
 * for base * 2^k ms (capped at maxMs). While banned, every request from it that needs a
 * token (batches and the read side) is answered 429 with Retry-After before any token is
 * looked at: a guesser learns nothing during the ban, so guessing runs at a few tries a
 * minute instead of thousands a second. An address is forgotten FORGET_MS after its last
 * failure; a success does not clear the count (one valid token must not reset a guesser).
 *
 * Only a wrong token counts: a request without `authorization` (a page opened before its
 * read token is typed, a probe) is answered 401 and not counted. A request with a verified
 * client certificate is never held back (the certificate, not a token, authenticates it).
 *
 * Trade-off (docs/security.md): the ban is per address, so a wrong-token storm from behind
 * the same NAT as a gateway delays that gateway's batches too, for at most maxMs at a time.
 * The gateway keeps its readings on disk and retries after Retry-After, so this costs
 * latency, not data; give such a gateway a client certificate to exempt it. Checking good
 * tokens during the ban instead would answer the guesser "right" or "429" at full speed,
 * which is no back-off at all.
 *
 * Keys and memory as for the gateway's login back-off, with the same code
 * (common/addresses.ts): an IPv4 address (IPv4-mapped IPv6 as IPv4), an IPv6 address by its
 * /64; at most `maxAddresses` entries, least recently failed forgotten first, so a flood of
 * fresh addresses only makes the table forget, which is counted.
 */
import { FailureBackoff } from '../common/addresses.ts'

export { addressKey } from '../common/addresses.ts'

export const FORGET_MS = 15 * 60_000

export type AuthBackoffConfig = { freeFailures: number, baseMs: number, maxMs: number, maxAddresses: number }

/** The ingest's wrong-token back-off: FailureBackoff with the ingest's forget time. */
export class AuthBackoff extends FailureBackoff {
  constructor (c: AuthBackoffConfig, now: () => number = Date.now) {
    super({ ...c, forgetMs: FORGET_MS }, now)
  }
}
