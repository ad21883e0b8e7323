/**
 * Topic mappings: readings from devices that publish in their own shapes (Tasmota, Shelly,
 * Zigbee2MQTT, scripts), set under `mappings` in the gateway's JSON config file. Modelled
 * on Telegraf's mqtt_consumer topic parsing and JSON paths; see docs/mapping.md.
 *
 *   { "topic": "shellies/+device/sensor/+field",  MQTT filter; `+name` names a segment, `#` last
 *     "device": "{device}",                       device id template (default: the first named segment)
 *     "format": "auto" | "json" | "number",       auto: a JSON object or a plain number
 *     "value": "{field}",                          name of a plain number's value (default "value")
 *     "values": { "temp": "AM2301.Temperature" },  pick JSON paths (default: every numeric/boolean field)
 *     "separator": "_",                            joins nested names when flattening
 *     "seq": "Seq",                                JSON path of a device seq: exactly-once (else rx-based, at-least-once)
 *     "ts": "ts",                                  JSON path of a device time in ms
 *     "clientIdMustMatch": false,                  only the client whose id is the device id, never an app
 *     "anyDevice": false }                         any client may produce readings of any device (a bridge)
 *
 * Who may produce which device's readings is decided in publisher.ts (docs/mapping.md).
 */
import { ConfigError, isValidDeviceId } from '../../protocol/index.ts'

export type MappingFormat = 'auto' | 'json' | 'number'

export type Mapping = {
  topic: string
  device: string
  format: MappingFormat
  value: string
  values: Record<string, string> | null
  separator: string
  seq: string | null
  ts: string | null
  clientIdMustMatch: boolean
  /** Opt-in for bridges (a Zigbee2MQTT coordinator): lifts the own-id rule of publisher.ts. */
  anyDevice: boolean
}

const KEYS = new Set(['topic', 'device', 'format', 'value', 'values', 'separator', 'seq', 'ts', 'clientIdMustMatch', 'anyDevice'])
const SEGMENT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/

/** Named segments of a topic pattern, in order. */
export function segmentNames (topic: string): string[] {
  return topic.split('/').filter((s) => s.startsWith('+') && s.length > 1).map((s) => s.slice(1))
}

function templateNames (tpl: string): string[] {
  return [...tpl.matchAll(/\{([^}]*)\}/g)].map((m) => m[1]!)
}

function str (field: string, v: unknown, dflt: string): string {
  if (v === undefined) return dflt
  if (typeof v !== 'string' || v === '') throw new ConfigError(field, 'must be non-empty text')
  return v
}

export function parseMappings (raw: unknown): Mapping[] {
  if (raw === undefined) return []
  if (!Array.isArray(raw)) throw new ConfigError('mappings', 'must be an array of mapping objects (docs/mapping.md)')
  return raw.map((m, i) => parseMapping(m, `mappings[${i}]`))
}

function parseMapping (m: unknown, at: string): Mapping {
  if (m === null || typeof m !== 'object' || Array.isArray(m)) throw new ConfigError(at, 'must be an object')
  const o = m as Record<string, unknown>
  for (const k of Object.keys(o)) if (!KEYS.has(k)) throw new ConfigError(`${at}.${k}`, `unknown key (known: ${[...KEYS].join(', ')})`)
  const topic = str(`${at}.topic`, o.topic, '')
  if (topic === '') throw new ConfigError(`${at}.topic`, 'required')
  if (topic.startsWith('devices/') || topic.startsWith('$') || topic === '#' || topic.startsWith('+/') || topic === '+') {
    throw new ConfigError(`${at}.topic`, 'must start with a fixed segment outside devices/ and $-topics')
  }
  const segs = topic.split('/')
  for (const [i, s] of segs.entries()) {
    if (s === '#' && i !== segs.length - 1) throw new ConfigError(`${at}.topic`, '# must be the last segment')
    if (s.startsWith('+') && s.length > 1 && !SEGMENT_NAME.test(s.slice(1))) throw new ConfigError(`${at}.topic`, `segment name ${JSON.stringify(s.slice(1))} must match ${SEGMENT_NAME}`)
    if (s !== '#' && !s.startsWith('+') && (s.includes('+') || s.includes('#'))) throw new ConfigError(`${at}.topic`, `wildcards must fill a whole segment: ${JSON.stringify(s)}`)
  }
  const names = segmentNames(topic)
  if (new Set(names).size !== names.length) throw new ConfigError(`${at}.topic`, 'segment names must differ')
  const device = str(`${at}.device`, o.device, names[0] ? `{${names[0]}}` : '')
  if (device === '') throw new ConfigError(`${at}.device`, 'required when the topic names no segment')
  const value = str(`${at}.value`, o.value, 'value')
  for (const [field, tpl] of [['device', device], ['value', value]] as const) {
    for (const n of templateNames(tpl)) if (!names.includes(n)) throw new ConfigError(`${at}.${field}`, `{${n}} is not a named segment of the topic (named: ${names.join(', ') || 'none'})`)
  }
  if (!templateNames(device).length && !isValidDeviceId(device)) throw new ConfigError(`${at}.device`, 'must be a valid device id (^[A-Za-z0-9._-]{1,64}$) or a template')
  const format = str(`${at}.format`, o.format, 'auto')
  if (format !== 'auto' && format !== 'json' && format !== 'number') throw new ConfigError(`${at}.format`, 'must be auto, json or number')
  let values: Record<string, string> | null = null
  if (o.values !== undefined) {
    if (o.values === null || typeof o.values !== 'object' || Array.isArray(o.values)) throw new ConfigError(`${at}.values`, 'must be an object: value name -> JSON path')
    values = {}
    for (const [k, p] of Object.entries(o.values)) values[k] = str(`${at}.values.${k}`, p, '')
  }
  const opt = (k: 'seq' | 'ts'): string | null => o[k] === undefined ? null : str(`${at}.${k}`, o[k], '')
  for (const k of ['clientIdMustMatch', 'anyDevice'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new ConfigError(`${at}.${k}`, 'must be true or false')
  }
  if (o.clientIdMustMatch === true && o.anyDevice === true) throw new ConfigError(`${at}.anyDevice`, 'contradicts clientIdMustMatch: set one of them')
  return {
    topic,
    device,
    format,
    value,
    values,
    separator: str(`${at}.separator`, o.separator, '_'),
    seq: opt('seq'),
    ts: opt('ts'),
    clientIdMustMatch: o.clientIdMustMatch === true,
    anyDevice: o.anyDevice === true
  }
}
