/**
 * The limits in front of the broker's Aedes hooks: `limitedOptions` wraps the
 * `preConnect`, `authorizePublish` and `authorizeSubscribe` of `Aedes.createBroker`'s
 * options so a refused CONNECT, PUBLISH or subscription (limit-rules.ts) never reaches them
 * (nor the intake), and sets the bounded persistence and Aedes' own QoS 2 window and
 * topic-level bound. `watchBroker` wires session tracking, the retained replay guard, the
 * subscription count and the QoS 2 counter to the broker's events.
 *
 * Aedes calls these hooks with its own callbacks; nothing here throws into them. Guarded by
 * test/faults/hostile-clients.test.ts and test/integration/paho-limits.test.ts.
 */
import type { Aedes, AedesOptions } from 'aedes'
import type { OffenderLog } from './limit-offenders.ts'
import type { LimitRules } from './limit-rules.ts'
import type { BrokerLimits } from './limits-config.ts'
import type { BoundedPersistence } from './persistence.ts'

export function limitedOptions (opts: AedesOptions, rules: LimitRules, persistence: BoundedPersistence, config: BrokerLimits): AedesOptions {
  const { preConnect, authorizePublish, authorizeSubscribe } = opts
  return {
    ...opts,
    persistence,
    maxInflightInbound: config.maxInflightInbound,
    // Aedes' own level check (its default and ceiling, 100) runs before the hooks and would
    // close offenders uncounted: ours (maxTopicLevels <= 100) comes first and counts them
    maxTopicLevels: 100,
    preConnect: (client, packet, cb) => {
      const refused = rules.checkConnect(client, packet)
      if (refused) { cb(new Error(refused.message), false); return }
      if (preConnect) preConnect(client, packet, cb); else cb(null, true)
    },
    authorizePublish: (client, packet, cb) => {
      if (!client) { if (authorizePublish) authorizePublish(client, packet, cb); else cb(null); return } // the gateway's own publishes
      rules.checkPublish(client, packet, (err) => {
        if (err) cb(err)
        else if (authorizePublish) authorizePublish(client, packet, cb)
        else cb(null)
      })
    },
    authorizeSubscribe: (client, sub, cb) => {
      const granted = rules.checkSubscribe(client, sub)
      if (!granted) { cb(null, null); return } // SUBACK 0x80 for this filter
      if (authorizeSubscribe) authorizeSubscribe(client, granted, cb); else cb(null, granted)
    }
  }
}

/** Wires the limits to the broker's events; returns the session-expiry sweep timer (unref'd) to clear on close. */
export function watchBroker (aedes: Aedes, rules: LimitRules, persistence: BoundedPersistence, offenders: OffenderLog, sessionExpirySec: number): NodeJS.Timeout {
  const p = persistence
  aedes.on('client', (c) => p.clientConnected(c))
  aedes.on('clientDisconnect', (c) => p.clientDisconnected(c))
  // Aedes asks for the retained stream right after this event, in the same tick (an order,
  // not a shape: aedes-internals.ts says why a test, not a startup check, guards it)
  aedes.on('subscribe', (_subs, c) => { p.replayClient = c as unknown as { id: string, closed: boolean } })
  aedes.on('unsubscribe', (topics, c) => rules.unsubscribed(c, topics))
  const overInflight = new WeakSet<object>() // every packet of the offending chunk fails: count the client once
  aedes.on('clientError', (c, err) => {
    if (!err.message.startsWith('maxInflightInbound exceeded') || overInflight.has(c)) return
    overInflight.add(c)
    offenders.hit('inflight_inbound', c.id, {})
  })
  const everyMs = Math.min(60_000, Math.max(1000, sessionExpirySec * 250))
  const timer = setInterval(() => p.expire(), everyMs)
  timer.unref()
  return timer
}
