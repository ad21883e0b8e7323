/**
 * Topic rules, for every auth mode (pure functions; docs/security.md states them as a table).
 *
 * Publish:
 * - nobody publishes to a `$`-topic. Aedes acts on `$SYS/{brokerId}/new/clients` by closing
 *   the local client named in the payload (cluster takeover), so one such publish would
 *   disconnect any device; the gateway's own `authorizePublish` replaced Aedes' default
 *   `$SYS` refusal, so it has to refuse `$SYS` itself. Wills go through the same hook.
 * - `devices/{id}/readings` only by client id `{id}`, never by an app;
 * - `devices/{id}/receipts` only by the gateway itself;
 * - `devices/{id}/commands/answers` only by client id `{id}` (never an app); nobody
 *   publishes to `devices/{id}/commands`: the gateway writes commands into their device's
 *   own session (gateway/commands/), never through the subscriptions;
 * - an authenticated device publishes nothing else.
 * Subscribe (refusal = SUBACK 0x80 for that filter, the connection stays):
 * - a device: only `devices/{its id}/receipts` and `devices/{its id}/commands`;
 * - nobody: a filter aimed at another device's commands (`devices/+/commands`,
 *   `+/+/commands`, `devices/{other}/commands`: see `targetsOthersCommands`);
 * - `$`-filters (`$SYS/#`): apps, and with `--auth none` local clients (unless
 *   `--wildcard-subscribe apps`);
 * - wildcards and other devices' topics: "privileged" clients (see `privileged`);
 * - anyone else: exact topics, and under `devices/` only its own receipts.
 */
import { isValidDeviceId, parseDeviceTopic } from '../../protocol/index.ts'
import { parseCommandTopic } from '../../protocol/commands.ts'

/** Who a client authenticated as: the one principal type of the broker (auth.ts returns its named kinds). */
export type Principal =
  | { role: 'device', name: string }
  | { role: 'app', name: string }
  | { role: 'anonymous' }

export type WildcardPolicy = 'local' | 'apps' | 'all'

/**
 * The principal as the owner of a persistent session (persistence.ts): `device:{id}`,
 * `app:{name}`, or `anonymous` (with `--auth none` the client id alone names the owner).
 */
export function principalKey (p: Principal): string {
  return p.role === 'anonymous' ? 'anonymous' : `${p.role}:${p.name}`
}

/** Who is asking: the principal, its client id, and whether it connected from a local network. */
export type Who = { principal: Principal, clientId: string, local: boolean }

export const PUBLISH_DENIALS = ['dollar_topic', 'other_device', 'receipts', 'device_topic', 'commands'] as const
export const SUBSCRIBE_DENIALS = ['dollar_topic', 'device_topic', 'wildcard', 'other_device', 'commands'] as const
export type PublishDenial = (typeof PUBLISH_DENIALS)[number]
export type SubscribeDenial = (typeof SUBSCRIBE_DENIALS)[number]

export type PublishVerdict =
  | { kind: 'allow' }
  | { kind: 'readings', deviceId: string }
  | { kind: 'answer', deviceId: string }
  | { kind: 'deny', rule: PublishDenial, message: string }

export function publishVerdict (who: Who, topic: string): PublishVerdict {
  if (topic.startsWith('$')) return { kind: 'deny', rule: 'dollar_topic', message: 'nobody publishes to $-topics' }
  const role = who.principal.role
  const ct = parseCommandTopic(topic)
  if (ct !== null) {
    if (ct.kind === 'answers' && role !== 'app' && ct.deviceId === who.clientId && isValidDeviceId(ct.deviceId)) return { kind: 'answer', deviceId: ct.deviceId }
    return { kind: 'deny', rule: 'commands', message: ct.kind === 'commands' ? 'only the gateway publishes commands' : `client ${who.clientId} may not answer for device ${ct.deviceId}` }
  }
  const t = parseDeviceTopic(topic)
  if (t?.kind === 'readings') {
    if (role === 'app' || t.deviceId !== who.clientId || !isValidDeviceId(t.deviceId)) {
      return { kind: 'deny', rule: 'other_device', message: `client ${who.clientId} may not publish to ${topic}` }
    }
    return { kind: 'readings', deviceId: t.deviceId }
  }
  if (t?.kind === 'receipts') return { kind: 'deny', rule: 'receipts', message: 'only the gateway publishes receipts' }
  if (role === 'device') return { kind: 'deny', rule: 'device_topic', message: 'devices may publish only to their readings topic' }
  return { kind: 'allow' }
}

export type OwnReadings = { topic: string, verdict: { kind: 'readings', deviceId: string } }

/**
 * The verdict `publishVerdict` gives `who` on its own readings topic, worked out once per
 * connection: a reading then costs one string comparison instead of a topic parse and
 * three objects. Null when that topic is not the client's to publish readings on.
 */
export function ownReadings (who: Who): OwnReadings | null {
  const topic = `devices/${who.clientId}/readings`
  const verdict = publishVerdict(who, topic)
  return verdict.kind === 'readings' ? { topic, verdict } : null
}

/** May this client subscribe to wildcards and to other devices' topics? */
export function privileged (who: Who, policy: WildcardPolicy): boolean {
  switch (who.principal.role) {
    case 'app': return true
    case 'device': return false
    case 'anonymous': return policy === 'all' || (policy === 'local' && who.local)
  }
}

const hasWildcard = (filter: string): boolean => filter.includes('#') || filter.includes('+')

/** null = allowed, else the rule that refuses it. */
export function subscribeDenial (who: Who, filter: string, policy: WildcardPolicy): SubscribeDenial | null {
  const p = who.principal
  if (p.role === 'device') return filter === `devices/${p.name}/receipts` || filter === `devices/${p.name}/commands` ? null : 'device_topic'
  if (targetsOthersCommands(filter, who.clientId)) return 'commands'
  if (filter.startsWith('$')) {
    const sysOk = p.role === 'app' || (who.local && policy !== 'apps')
    return sysOk ? null : 'dollar_topic'
  }
  if (privileged(who, policy)) return null
  if (hasWildcard(filter)) return 'wildcard'
  const t = parseDeviceTopic(filter)
  if (t !== null && !((t.kind === 'receipts' || filter === `devices/${who.clientId}/commands`) && t.deviceId === who.clientId)) return 'other_device'
  return null
}

/** Does MQTT filter `filter` match `topic` (neither a `$`-topic)? */
export function filterMatches (filter: string, topic: string): boolean {
  const f = filter.split('/')
  const t = topic.split('/')
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true // also the parent level [MQTT-4.7.1-2]
    if (i >= t.length) return false
    if (f[i] !== '+' && f[i] !== t[i]) return false
  }
  return f.length === t.length
}

/**
 * A filter aimed at another device's commands: it matches `devices/{other}/commands` and not
 * that device's readings (`devices/+/commands`, `+/+/commands`, `devices/{other}/commands/#`).
 * Filters that cover every topic (`#`, `devices/#`, `devices/+/+`) stay with the other
 * rules: commands never go through the subscriptions (the gateway writes each into its
 * device's own session), so such a filter receives none, and local apps keep theirs.
 */
export function targetsOthersCommands (filter: string, clientId: string): boolean {
  const level = filter.split('/')[1]
  const other = level === undefined || level === '+' || level === '#' ? '\u0000' : level
  if (other === clientId) return false
  return filterMatches(filter, `devices/${other}/commands`) && !filterMatches(filter, `devices/${other}/readings`)
}
