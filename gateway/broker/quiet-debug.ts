/**
 * mqtt-packet (Aedes' MQTT parser and writer) calls the `debug` package several times per
 * packet. Even when nothing is enabled, each call builds its rest-argument array and asks
 * an `enabled` getter: 11% of the bytes the gateway allocated per reading in a sampling
 * heap profile under `bench:intake` (100 x 32), and ~3% of its CPU. So when DEBUG is unset
 * at start, the `mqtt-packet:*` namespaces get a function that does nothing; other
 * namespaces, and everything when DEBUG is set, keep the real `debug`.
 *
 * Imported by broker/index.ts before Aedes, so it runs before mqtt-packet creates its
 * debug functions. Best effort: if the module layout is not the expected one, nothing
 * changes. It touches an Aedes internal (its dependency's module cache) outside
 * aedes-internals.ts, whose header says why this one cannot be among its startup checks.
 */
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

type Factory = ((ns: string) => unknown) & Record<string, unknown>

function off (ns: string): unknown {
  const d = Object.assign(() => {}, { namespace: ns, enabled: false, log: () => {}, destroy: () => true })
  return Object.assign(d, { extend: (sub: string) => off(`${ns}:${sub}`) })
}

/** Makes mqtt-packet's debug calls no-ops, unless DEBUG is set. */
function quietMqttPacketDebug (): void {
  if (process.env.DEBUG) return
  try {
    const fromAedes = createRequire(fileURLToPath(import.meta.resolve('aedes')))
    const fromPacket = createRequire(fromAedes.resolve('mqtt-packet'))
    const id = fromPacket.resolve('debug')
    const real = fromPacket('debug') as Factory
    const mod = fromPacket.cache[id]
    if (!mod || typeof real !== 'function' || (real as { quieted?: boolean }).quieted) return
    const wrapped = Object.assign((ns: string) => ns.startsWith('mqtt-packet') ? off(ns) : real(ns), real, { quieted: true }) as Factory
    wrapped.default = wrapped
    wrapped.debug = wrapped
    mod.exports = wrapped
  } catch {
    // another module layout: the real debug stays
  }
}

quietMqttPacketDebug()
