/**
 * `GET /readyz` of the ingest: ready when the sink can store and, with `--mqtt-broker`, every
 * broker connection is up and subscribed: the batch consumer's to the batch topics (an
 * ingest that cannot reach its broker takes no batches, whatever its HTTP side says), and
 * the commands' connection (commands/mqtt.ts) to the gateways' command reports (without it
 * no report is applied and no command goes down). The body names what is not ready, so a
 * load balancer's log or an operator's curl says why.
 */
import type { Sink } from './sinks/types.ts'

/**
 * What /readyz shows of the broker connection (mqtt-consumer.ts reports it): `broker` is the
 * URL without user info; `connected` and `subscribed` are true when every connection is;
 * the counts say how many. Declared here, where it is shown, so the consumer and the HTTP
 * server each import this file and not each other.
 */
export type MqttConsumerStatus = {
  broker: string
  connected: boolean
  subscribed: boolean
  connections: number
  connectedConnections: number
  subscribedConnections: number
  batches: number
  unanswerable: number
}

/**
 * What /readyz shows of the commands' broker connection (commands/mqtt.ts reports it):
 * `subscribed` to the gateways' command reports. Declared here for the same reason.
 */
export type CommandsMqttStatus = {
  broker: string
  connected: boolean
  subscribed: boolean
}

export type Readiness = {
  ok: boolean
  body: { status: 'ready' | 'unready', sink: string, reasons?: string[], mqtt?: MqttConsumerStatus, commandsMqtt?: CommandsMqttStatus }
}

export async function readiness (deps: { sink: Sink, mqttStatus?: () => MqttConsumerStatus | null, commandsMqttStatus?: () => CommandsMqttStatus | null }): Promise<Readiness> {
  const reasons: string[] = []
  if (!(await (deps.sink.ready?.() ?? true))) reasons.push(`sink ${deps.sink.kind} cannot store`)
  const mqtt = deps.mqttStatus?.() ?? null
  if (mqtt !== null) {
    if (!mqtt.connected) reasons.push(`broker ${mqtt.broker}: ${mqtt.connectedConnections} of ${mqtt.connections} connections up`)
    else if (!mqtt.subscribed) reasons.push(`broker ${mqtt.broker}: ${mqtt.subscribedConnections} of ${mqtt.connections} connections subscribed to the batch topics`)
  }
  const commandsMqtt = deps.commandsMqttStatus?.() ?? null
  if (commandsMqtt !== null) {
    if (!commandsMqtt.connected) reasons.push(`broker ${commandsMqtt.broker}: the commands connection is down`)
    else if (!commandsMqtt.subscribed) reasons.push(`broker ${commandsMqtt.broker}: the commands connection is not subscribed to the command reports`)
  }
  const ok = reasons.length === 0
  return { ok, body: { status: ok ? 'ready' : 'unready', sink: deps.sink.kind, ...(ok ? {} : { reasons }), ...(mqtt !== null ? { mqtt } : {}), ...(commandsMqtt !== null ? { commandsMqtt } : {}) } }
}
