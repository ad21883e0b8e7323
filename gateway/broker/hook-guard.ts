/**
 * Nothing a network peer sends may throw out of an Aedes hook. Aedes calls its
 * hooks from socket reads and from `setImmediate` (lib/handlers/connect.js runs
 * `authenticate` one tick after `preConnect`) with no try/catch around them, so an
 * exception in a hook is an uncaught exception: the gateway exits, every device with it.
 * The case that did: `getPeerCertificate()` returns null once a TLS socket's handle is gone,
 * and a device whose connection reset between its CONNECT and `authenticate` crashed the
 * gateway in about half the runs (listeners.ts now reads the certificate at the handshake).
 *
 * `HookGuard.wrap` puts a try/catch around every hook the broker defines. A throw is logged
 * (once per hook and message, with its stack), counted in
 * `gateway_mqtt_hook_errors_total{hook}`, and the client is closed: a hook that cannot
 * decide denies. Its callback is not called then (Aedes drops a closed client's pending
 * work), except for the gateway's own publishes (no client), whose publish fails with the
 * error. `authorizeForward` forwards nothing to that client; `published` completes.
 * `fail` is the same answer for an asynchronous part of a hook (a promise's rejection) and
 * for the listeners' `connection` callback (index.ts).
 *
 * The test that guards it: test/unit/broker-hook-guard.test.ts (every hook, a throwing
 * inner hook) and test/integration/tls-reset-race.test.ts (the TLS reset itself).
 */
import type { AedesOptions, Client } from 'aedes'
import type { Logger } from 'pino'
import { Counter, type Registry } from 'prom-client'
import { LogOnce, WhenFull } from '../../common/index.ts'

export const HOOKS = ['connection', 'preConnect', 'authenticate', 'authorizePublish', 'authorizeSubscribe', 'authorizeForward', 'published'] as const
export type HookName = (typeof HOOKS)[number]

/** Distinct (hook, message) pairs logged with a stack; past it, errors are only counted. */
const MAX_LOGGED = 100

export class HookGuard {
  private readonly errors: Counter<'hook'>
  private readonly logged = new LogOnce(MAX_LOGGED, WhenFull.Stop)

  constructor (registry: Registry, private readonly log: Logger) {
    this.errors = new Counter({ name: 'gateway_mqtt_hook_errors_total', help: 'Exceptions caught in a broker hook (the client was closed instead of the gateway crashing); any is a bug to report', labelNames: ['hook'], registers: [registry] })
    for (const h of HOOKS) this.errors.inc({ hook: h }, 0)
  }

  /** A hook failed for `client`: count, log, close that client. Never throws. */
  fail (hook: HookName, client: Client | null | undefined, err: unknown): void {
    try {
      this.errors.inc({ hook })
      const message = err instanceof Error ? err.message : String(err)
      if (this.logged.first(`${hook}\u0000${message}`)) {
        this.log.error({ hook, clientId: client?.id, err }, 'exception in a broker hook; closing the client (logged once per hook and message)')
      }
    } catch {}
    closeQuietly(client)
  }

  /** `opts` with each hook it defines run under a try/catch (see the header). */
  wrap (opts: AedesOptions): AedesOptions {
    const { preConnect, authenticate, authorizePublish, authorizeSubscribe, authorizeForward, published } = opts
    const out: AedesOptions = { ...opts }
    if (preConnect) {
      out.preConnect = (client, packet, cb) => {
        try { preConnect(client, packet, cb) } catch (err) { this.fail('preConnect', client, err) }
      }
    }
    if (authenticate) {
      out.authenticate = (client, username, password, cb) => {
        try { authenticate(client, username, password, cb) } catch (err) { this.fail('authenticate', client, err) }
      }
    }
    if (authorizePublish) {
      out.authorizePublish = (client, packet, cb) => {
        try {
          authorizePublish(client, packet, cb)
        } catch (err) {
          this.fail('authorizePublish', client, err)
          if (!client) cb(err instanceof Error ? err : new Error(String(err))) // the gateway's own publish: it fails
        }
      }
    }
    if (authorizeSubscribe) {
      out.authorizeSubscribe = (client, sub, cb) => {
        try { authorizeSubscribe(client, sub, cb) } catch (err) { this.fail('authorizeSubscribe', client, err) }
      }
    }
    if (authorizeForward) {
      out.authorizeForward = (client, packet) => {
        try { return authorizeForward(client, packet) } catch (err) { this.fail('authorizeForward', client, err); return null }
      }
    }
    if (published) {
      out.published = (packet, client, cb) => {
        try { published(packet, client, cb) } catch (err) { this.fail('published', null, err); cb() }
      }
    }
    return out
  }
}

function closeQuietly (client: Client | null | undefined): void {
  if (!client) return
  try {
    client.close()
  } catch {
    try { (client.conn as { destroy?: () => void } | undefined)?.destroy?.() } catch {}
  }
}
