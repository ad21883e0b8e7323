/**
 * TCP_NODELAY on an MQTT.js connection. MQTT.js opens its socket with Nagle's algorithm on;
 * a small write (a PUBACK, a results message, the tail of a batch) then waits for the ACK
 * of the segment before it, which the peer's delayed ACK holds for up to 40 ms: each batch
 * round trip of the MQTT upstream paid that several times. Called on every `connect` (each
 * reconnect has a new socket); the CONNECT itself went out before, which costs nothing.
 */
import type { MqttClient } from 'mqtt'

export function noDelay (client: MqttClient): void {
  const s = client.stream as { setNoDelay?: (on: boolean) => unknown } | undefined
  s?.setNoDelay?.(true)
}
