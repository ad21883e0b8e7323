/**
 * The gateway's command link to the cloud (docs/commands.md), transport-free: the commands
 * core (`index.ts`) talks to the ingest only through a `CommandLink`; `link-http.ts` (long
 * poll `GET /v1/gateway/commands`, `POST /v1/gateway/command-reports`) and `link-mqtt.ts`
 * (`gateways/{id}/commands` at QoS 1 on a persistent session, reports on
 * `gateways/{id}/command-reports`, answers on `gateways/{id}/command-results`) implement it,
 * and `createCommandLink` picks the one the `--upstream` URLs ask for, as the readings'
 * upstream factory does.
 */
import type { CommandsMessage, ReportResult, ReportsRequest } from '../../protocol/commands.ts'

/** What came back for one reports request. */
export type ReportsAnswer =
  | { kind: 'results', results: readonly ReportResult[] }
  /** refused as a whole (auth, too large, busy...): `retryAfterMs` when the ingest said */
  | { kind: 'refused', status: number, message: string, retryAfterMs?: number }
  /** no answer (connection error, timeout): send the same reports again after back-off */
  | { kind: 'none', error: string }

export type LinkState = { state: 'idle' | 'ok' | 'failing' | 'auth-failed', url: string, lastError: string | null, lastOkAt: number | null }

export interface CommandLink {
  /**
   * Starts receiving. `onCommands` is called for every commands message, one at a time, in
   * arrival order; the link takes the next message (HTTP: polls again; MQTT: PUBACKs this
   * one) only after its promise resolved, which the core does once the commands are durable.
   * A rejected promise means "not stored": HTTP polls again after back-off, MQTT does not
   * PUBACK, so the broker sends the message again.
   */
  start (onCommands: (m: CommandsMessage) => Promise<void>): void
  /** Sends one reports request and waits for its per-report answer. Never throws. */
  sendReports (req: ReportsRequest): Promise<ReportsAnswer>
  status (): LinkState
  /** Stops receiving and sending; idempotent. */
  close (): Promise<void>
}
