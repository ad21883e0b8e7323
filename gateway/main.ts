#!/usr/bin/env node
/**
 * Gateway CLI: `gateway [--flags]` (compiled) or `node --import tsx gateway/main.ts`.
 * Flags, GATEWAY_* env vars and `--config FILE` (JSON) per docs/design.md section 9; `--help`
 * lists them. `--hash-password` reads a password on stdin and prints its scrypt hash for
 * the `--auth-file`.
 */
import { readFile } from 'node:fs/promises'
import { ConfigError, VERSION } from '../protocol/index.ts'
import { configFileArg, createLogger, onStopSignals } from '../common/index.ts'
import { hashPassword } from './broker/auth.ts'
import { passwdMain } from './cli/passwd.ts'
import { dlqMain } from './cli/dlq.ts'
import { checkMain } from './cli/check.ts'
import { commandsMain } from './cli/commands.ts'
import { parseGatewayConfig } from './config.ts'
import { gatewayUsage } from './help.ts'
import { Gateway } from './index.ts'

async function main (): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv[0] === 'passwd') { process.exitCode = await passwdMain(argv.slice(1)); return }
  if (argv[0] === 'dlq') { process.exitCode = await dlqMain(argv.slice(1)); return }
  if (argv[0] === 'check') { process.exitCode = await checkMain(argv.slice(1)); return }
  if (argv[0] === 'commands') { process.exitCode = await commandsMain(argv.slice(1)); return }
  if (argv.includes('--version')) { process.stdout.write(`gateway ${VERSION}\n`); return }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(gatewayUsage())
    return
  }
  if (argv[0] === '--hash-password') {
    const chunks: Buffer[] = []
    for await (const c of process.stdin) chunks.push(c as Buffer)
    process.stdout.write(await hashPassword(Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '')) + '\n')
    return
  }
  const log = createLogger({ base: { service: 'gateway' } })
  let config
  try {
    const file = configFileArg(argv, process.env, 'GATEWAY')
    let fileObj: Record<string, unknown> | undefined
    if (file) {
      try { fileObj = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown> } catch (err) { throw new ConfigError('config', `cannot read ${file}: ${(err as Error).message}`) }
    }
    config = parseGatewayConfig({ argv, env: process.env, file: fileObj })
  } catch (err) {
    process.stderr.write(`gateway: ${(err as Error).message}\n`)
    process.exitCode = 2
    return
  }
  let gw: Gateway
  try {
    gw = await Gateway.create(config, log, { defaultMetrics: true })
  } catch (err) {
    log.fatal({ err, field: (err as ConfigError).field }, 'gateway failed to start')
    process.stderr.write(`gateway: failed to start: ${(err as Error).message}\n`)
    // exit now, whatever a half-started component left open: a process that listens on
    // nothing must not look alive to systemd, which would not restart it
    process.exit(err instanceof ConfigError ? 2 : 1)
  }
  // the ready line is a contract (tests, orchestrators wait for it): logged whatever LOG_LEVEL
  const readyLog = log.isLevelEnabled('info') ? log : createLogger({ base: { service: 'gateway' }, level: 'info' })
  readyLog.info({ mqttHost: config.host, mqttPort: config.mqtt ? gw.mqttPort : null, tlsPort: gw.tlsPort, adminPort: gw.adminPort, gateway: config.gatewayId, epoch: gw.store.epoch, durability: config.durability, ackMode: config.ackMode }, 'ready')
  // one Ctrl-C under `npm run` arrives twice within milliseconds: that copy is not a second
  // signal (common/signals.ts)
  onStopSignals({
    onStop: (signal) => {
      log.info({ signal }, 'shutting down')
      const t = setTimeout(() => { log.error('graceful shutdown timed out; exiting'); process.exit(1) }, config.shutdownTimeoutMs)
      t.unref()
      gw.close().then(() => { log.flush(); process.exitCode = 0 }, (err: Error) => { log.error({ err }, 'shutdown failed'); process.exitCode = 1 })
    },
    onRepeat: (signal, afterMs) => { log.debug({ signal, afterMs }, 'repeated signal ignored: the same Ctrl-C') },
    onForce: (signal) => { log.warn({ signal }, 'second signal: exiting now'); process.exit(130) }
  })
  // SIGHUP: new TLS certificate and key for new MQTT TLS handshakes (docs/security-tls.md)
  process.on('SIGHUP', () => { void gw.broker.reloadTls() })
}

main().catch((err: Error) => {
  process.stderr.write(`gateway: ${err.stack ?? err.message}\n`)
  process.exit(1)
})
