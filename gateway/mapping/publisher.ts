/**
 * Who may produce which device's readings through a mapping. A mapping
 * takes the device id from the topic, so without a rule any client could forge readings of
 * any device (`sensor-1` publishing `shellies/sensor-7/sensor/temp`), indistinguishable
 * upstream from sensor-7's own. The rule is the one `devices/{id}/readings` has (acl.ts):
 *
 * - the client whose MQTT client id is the mapped device id: always;
 * - a device principal (`--auth file` device, TLS client certificate) or, under
 *   `--auth none`, any client (its principal is its client id, as for `devices/{id}/readings`):
 *   its own id only;
 * - an app principal (`--auth file`): any device, unless the mapping sets `clientIdMustMatch`;
 * - a mapping with `anyDevice: true` (a bridge such as a Zigbee2MQTT coordinator): any
 *   client, any device. `clientIdMustMatch: true`: only the device itself, no app either.
 *
 * For a device principal the client id is its name (auth.ts and the certificate check in
 * listeners.ts refuse any other), so comparing client ids covers every auth mode.
 */
import type { Principal } from '../broker/acl.ts'
import type { Mapping } from './config.ts'

export const MAPPED_DENIALS = ['other_device', 'client_id'] as const
/** other_device: the own-id rule; client_id: the mapping's clientIdMustMatch. */
export type MappedDenial = (typeof MAPPED_DENIALS)[number]

/** null = `clientId` (authenticated as `principal`) may produce readings of `device` here. */
export function mappedDenial (m: Pick<Mapping, 'clientIdMustMatch' | 'anyDevice'>, principal: Principal | undefined, clientId: string, device: string): MappedDenial | null {
  if (clientId === device) return null
  if (m.clientIdMustMatch) return 'client_id'
  if (m.anyDevice || principal?.role === 'app') return null
  return 'other_device'
}
