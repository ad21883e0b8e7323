/**
 * PLACEHOLDER (the commands core's branch): `createCommandLink` picks the transport to the
 * ingest (link-http.ts, link-mqtt.ts) from the `--upstream` URLs; that file is written on
 * another branch and replaces this one. Until then no link: commands stay off unless a
 * caller hands `Gateway.create` its own (`opts.commandLink`).
 */
import type { Logger } from 'pino'
import type { GatewayConfig } from '../config.ts'
import type { CommandLink } from './link.ts'

export function createCommandLink (_config: GatewayConfig, _log: Logger): CommandLink | null {
  return null
}
