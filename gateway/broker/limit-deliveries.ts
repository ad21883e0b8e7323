/**
 * Monkey-patches of Aedes 1.x client internals. Aedes keeps writing deliveries (a
 * whole retained replay) to a client that already hung up: each such write builds an
 * `Error` whose stack keeps a chain of finished Immediates alive (nodejs/node#66129),
 * ~1.25 KB per failed delivery, millions of them under a fuzzer. `guardDeliveries` wraps the
 * client's `deliverQoS` and `deliver0` (Aedes `lib/client.js`, not public API) so a delivery
 * to a closed client is counted (`gateway_mqtt_deliveries_skipped_total`) and dropped before
 * Aedes writes it; for a persistent session it stays queued (persistence.ts).
 *
 * `remoteOf` reads the client's `conn.remoteAddress`, the only name an offender has before
 * CONNECT. Both are reached through aedes-internals.ts, which throws at connection time if
 * a shape changes; test/unit/broker-limits-memory.test.ts and
 * test/faults/hostile-clients.test.ts guard the behaviour.
 */
import type { Client } from 'aedes'
import { clientInternals, remoteAddressOf, type Deliver } from './aedes-internals.ts'

/** Per connection: deliveries to a client that is gone are dropped, not written. */
export function guardDeliveries (client: Client, skipped: () => void): void {
  const c = clientInternals(client)
  const guard = (orig: Deliver): Deliver => (packet, cb) => {
    if (c.gone()) { skipped(); cb(); return }
    orig(packet, cb)
  }
  c.replaceDeliveries(guard(c.deliverQoS), guard(c.deliver0))
}

export function remoteOf (client: Client): string {
  return remoteAddressOf(client)
}
