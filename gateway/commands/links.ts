/**
 * Picks the command link the `--upstream` URLs ask for, as gateway/flush/upstream.ts picks
 * the readings' transport (the same rule: all mqtt:// or mqtts:// -> the MQTT link
 * (link-mqtt.ts), else HTTP (link-http.ts)); none without an upstream. Not started: the
 * commands core calls `start`.
 *
 * Credentials and TLS are the readings' upstream's. The caller passes the config the
 * flusher gets (`{ ...config, token, upstreamTls }`, gateway/index.ts: the token read from
 * `--token-file`, the CA and client certificate from their files); given a plain
 * GatewayConfig, they are read here from the same files, synchronously, at startup.
 */
import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import { ConfigError } from '../../protocol/index.ts'
import type { GatewayConfig } from '../config.ts'
import type { UpstreamTls } from '../flush/http-upstream.ts'
import { isMqttUpstream } from '../flush/upstream.ts'
import { HttpCommandLink } from './link-http.ts'
import type { CommandLink } from './link.ts'
import { MqttCommandLink } from './link-mqtt.ts'

export function createCommandLink (config: GatewayConfig & { upstreamTls?: UpstreamTls }, log: Logger): CommandLink | null {
  if (config.upstream.length === 0) return null
  const token = config.token !== '' || config.tokenFile === undefined ? config.token : readToken(config.tokenFile)
  const tls = config.upstreamTls ?? readTls(config)
  if (!isMqttUpstream(config)) {
    return new HttpCommandLink({
      urls: config.upstream,
      token,
      tls,
      pollWaitMs: config.commandPollWaitMs,
      requestTimeoutMs: config.requestTimeoutMs,
      retryBaseMs: config.retryBaseMs,
      retryMaxMs: config.retryMaxMs,
      authRetryMs: config.authRetryMs,
      apiRetryMs: config.commandApiRetryMs
    }, log)
  }
  const readingsClientId = config.upstreamClientId || `gw-${config.gatewayId}`
  return new MqttCommandLink({
    urls: config.upstream,
    gatewayId: config.gatewayId,
    clientId: config.commandClientId || `${readingsClientId}-cmd`,
    username: config.upstreamUsername || config.gatewayId,
    password: token,
    tls,
    alpn: config.upstreamAlpn,
    protocolVersion: config.upstreamMqttVersion === '5' ? 5 : 4,
    reconnectMs: config.upstreamReconnectMs,
    connectTimeoutMs: Math.min(30_000, config.requestTimeoutMs),
    resultsTimeoutMs: config.commandResultsTimeoutMs
  }, log)
}

function readFlagFile (field: string, path: string): Buffer {
  try { return readFileSync(path) } catch (err) { throw new ConfigError(field, `${path}: cannot read it: ${(err as Error).message}`, { cause: err }) }
}

/** The first line of `--token-file` (gateway/tls.ts `resolveToken` checked it at startup). */
function readToken (path: string): string {
  return readFlagFile('tokenFile', path).toString('utf8').split(/\r?\n/)[0]!.trim()
}

function readTls (c: GatewayConfig): UpstreamTls {
  const out: UpstreamTls = {}
  if (c.upstreamCa !== undefined) out.ca = readFlagFile('upstreamCa', c.upstreamCa)
  if (c.upstreamCert !== undefined) out.cert = readFlagFile('upstreamCert', c.upstreamCert)
  if (c.upstreamKey !== undefined) out.key = readFlagFile('upstreamKey', c.upstreamKey)
  return out
}
