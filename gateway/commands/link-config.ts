/**
 * Flags of the gateway's command link to the ingest (link-http.ts, link-mqtt.ts,
 * docs/commands.md): the gateway's schema spreads these. The link reuses the readings'
 * upstream flags (`--upstream`, the token, `--upstream-ca/-cert/-key`, the MQTT user name,
 * ALPN, protocol version and reconnect wait, `--retry-base-ms`/`--retry-max-ms`,
 * `--auth-retry-ms`, `--request-timeout-ms`); these are the link's own.
 */
export const commandLinkSchema = {
  commandPollWaitMs: { type: 'int', default: 25000, min: 100, max: 30000, doc: 'Commands over HTTP: how long the ingest may hold a long poll for commands (GET /v1/gateway/commands?wait=MS; the ingest caps it at 30 s)' },
  commandApiRetryMs: { type: 'int', default: 300_000, min: 100, max: 86_400_000, doc: 'Commands over HTTP: wait before polling again an ingest that answered 404 (it has no command API)' },
  commandResultsTimeoutMs: { type: 'int', default: 30000, min: 100, max: 3_600_000, doc: 'Commands over MQTT: how long a reports PUBLISH waits for its results on gateways/{gatewayId}/command-results; then it is sent again' },
  commandClientId: { type: 'string', default: '', doc: 'Commands over MQTT: client id of the command link\'s own persistent session (default: the readings\' client id + -cmd); stable, as commands wait in that session' }
} as const
