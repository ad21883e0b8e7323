/** MQTT topic names of docs/design.md section 3. */
export const DEVICE_ID_RE = /^[A-Za-z0-9._-]{1,64}$/

/**
 * A gateway id: it names the gateway in every batch and is a topic level of the MQTT
 * upstream (`gateways/{gateway}/batches/...`). The gateway's `--gateway-id` and the ingest's
 * MQTT consumer check it with this one pattern.
 */
export const GATEWAY_ID_RE = /^[A-Za-z0-9._-]{1,64}$/

export function isValidDeviceId (id: unknown): id is string {
  return typeof id === 'string' && DEVICE_ID_RE.test(id)
}

export function readingsTopic (deviceId: string): string {
  return `devices/${deviceId}/readings`
}

export function receiptsTopic (deviceId: string): string {
  return `devices/${deviceId}/receipts`
}

export type DeviceTopic = { deviceId: string, kind: 'readings' | 'receipts' | 'other' }

/**
 * Parses `devices/{id}/{kind}`. Returns null for topics outside `devices/`. The id is
 * returned even when it does not match DEVICE_ID_RE so the ACL can refuse it by name.
 */
export function parseDeviceTopic (topic: string): DeviceTopic | null {
  if (!topic.startsWith('devices/')) return null
  const rest = topic.slice(8)
  const slash = rest.indexOf('/')
  if (slash < 0) return { deviceId: rest, kind: 'other' }
  const deviceId = rest.slice(0, slash)
  const tail = rest.slice(slash + 1)
  const kind = tail === 'readings' ? 'readings' : tail === 'receipts' ? 'receipts' : 'other'
  return { deviceId, kind }
}
