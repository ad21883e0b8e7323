import assert from 'node:assert/strict'
import { test } from 'node:test'
import { configFileArg, envName, helpText, kebab, nearest, parseConfig, type Schema } from '../../common/config.ts'
import { ConfigError } from '../../protocol/errors.ts'

const schema = {
  gatewayId: { type: 'string', default: 'gw-1', pattern: /^[a-z0-9-]+$/, doc: 'Gateway id' },
  mqttPort: { type: 'int', default: 1883, min: 0, max: 65535, doc: 'MQTT listen port' },
  rate: { type: 'number', default: 1.5, min: 0, max: 1000, doc: 'Readings per second' },
  durability: { type: 'enum', values: ['process', 'power'], default: 'process', doc: 'What a write survives' },
  verbose: { type: 'bool', doc: 'Log more' },
  tls: { type: 'bool', default: true, doc: 'Use TLS' },
  upstream: { type: 'list', default: ['http://a'], doc: 'Upstream URLs' },
  token: { type: 'string', doc: 'Bearer token' }
} as const satisfies Schema

const parse = (argv: string[], env: Record<string, string | undefined> = {}, file?: Record<string, unknown>) =>
  parseConfig(schema, { argv, env, file, envPrefix: 'GATEWAY' })

/** Runs `fn`, asserts it throws a ConfigError for `field`, returns the error for more checks. */
function configError (fn: () => unknown, field: string): ConfigError {
  let caught: unknown
  try { fn() } catch (err) { caught = err }
  assert.ok(caught instanceof ConfigError, `expected ConfigError, got ${String(caught)}`)
  assert.equal(caught.field, field)
  return caught
}

test('defaults when nothing is given; optional fields without default stay absent', () => {
  const c = parse([])
  assert.deepEqual({ ...c }, { gatewayId: 'gw-1', mqttPort: 1883, rate: 1.5, durability: 'process', verbose: false, tls: true, upstream: ['http://a'] })
  assert.equal('token' in c, false)
  const port: number = c.mqttPort // typed by the schema
  assert.equal(port, 1883)
})

test('list defaults are copied: mutating a parsed config does not leak into the next parse', () => {
  const a = parse([])
  a.upstream.push('http://mutated')
  assert.deepEqual(parse([]).upstream, ['http://a'])
})

test('precedence: defaults < file < env < flags', () => {
  const file = { mqttPort: 1000, rate: 2, durability: 'power', gatewayId: 'from-file' }
  const env = { GATEWAY_MQTT_PORT: '2000', GATEWAY_RATE: '3' }
  const c = parse(['--mqtt-port', '3000'], env, file)
  assert.equal(c.mqttPort, 3000) // flag beats env and file
  assert.equal(c.rate, 3) // env beats file
  assert.equal(c.durability, 'power') // file beats default
  assert.equal(c.gatewayId, 'from-file')
  assert.equal(c.tls, true) // default
  assert.equal(parse([], env, file).mqttPort, 2000)
  assert.equal(parse([], {}, file).mqttPort, 1000)
})

test('env var names: {PREFIX}_{SNAKE_CASE}', () => {
  assert.equal(envName('GATEWAY', 'mqttPort'), 'GATEWAY_MQTT_PORT')
  assert.equal(envName('INGEST', 'port'), 'INGEST_PORT')
  assert.equal(envName('GATEWAY', 'maxBufferBytes'), 'GATEWAY_MAX_BUFFER_BYTES')
  assert.equal(kebab('mqttPort'), 'mqtt-port')
  assert.equal(kebab('maxBufferBytes'), 'max-buffer-bytes')
  assert.equal(parse([], { GATEWAY_MQTT_PORT: '1999' }).mqttPort, 1999)
  assert.equal(parse([], { MQTT_PORT: '1999', GATEWAY_MQTTPORT: '1999', INGEST_MQTT_PORT: '1999' }).mqttPort, 1883)
  assert.equal(parse([], { GATEWAY_MQTT_PORT: '' }).mqttPort, 1883) // empty = unset
  assert.equal(parse([], { GATEWAY_VERBOSE: 'yes', GATEWAY_TLS: '0' }).verbose, true)
  assert.equal(parse([], { GATEWAY_TLS: '0' }).tls, false)
})

test('--flag value and --flag=value', () => {
  assert.equal(parse(['--mqtt-port', '1884']).mqttPort, 1884)
  assert.equal(parse(['--mqtt-port=1885']).mqttPort, 1885)
  assert.equal(parse(['--token=a=b']).token, 'a=b') // only the first = separates
  assert.equal(parse(['--rate=0.25']).rate, 0.25)
  assert.equal(parse(['--durability', 'power']).durability, 'power')
  // the next argv element is taken as the value even when it looks like a number
  assert.equal(parse(['--rate', '0']).rate, 0)
  // later flags win
  assert.equal(parse(['--mqtt-port', '1', '--mqtt-port', '2']).mqttPort, 2)
})

test('booleans: --flag alone, --flag true|false, --flag=false, --no-flag', () => {
  assert.equal(parse(['--verbose']).verbose, true)
  assert.equal(parse(['--verbose', '--mqtt-port', '7']).verbose, true)
  assert.equal(parse(['--verbose', '--mqtt-port', '7']).mqttPort, 7)
  assert.equal(parse(['--verbose', 'false']).verbose, false)
  assert.equal(parse(['--verbose', 'true']).verbose, true)
  assert.equal(parse(['--tls=false']).tls, false)
  assert.equal(parse(['--no-tls']).tls, false)
  assert.equal(parse(['--no-verbose'], { GATEWAY_VERBOSE: 'true' }).verbose, false)
  assert.match(configError(() => parse(['--tls=maybe']), 'tls').message, /true or false/)
  // --no- only negates booleans
  configError(() => parse(['--no-mqtt-port']), 'no-mqtt-port')
})

test('lists: comma lists, repeated flags append, flags replace env/file values', () => {
  assert.deepEqual(parse(['--upstream', 'http://x, http://y']).upstream, ['http://x', 'http://y'])
  assert.deepEqual(parse(['--upstream', 'http://x', '--upstream=http://y,http://z']).upstream, ['http://x', 'http://y', 'http://z'])
  assert.deepEqual(parse([], { GATEWAY_UPSTREAM: 'http://e1,http://e2' }).upstream, ['http://e1', 'http://e2'])
  assert.deepEqual(parse(['--upstream', 'http://f'], { GATEWAY_UPSTREAM: 'http://e1' }).upstream, ['http://f'])
  assert.deepEqual(parse([], {}, { upstream: ['http://file1', 'http://file2'] }).upstream, ['http://file1', 'http://file2'])
  assert.deepEqual(parse(['--upstream', ',,http://x,,']).upstream, ['http://x'])
  configError(() => parse([], {}, { upstream: [1, 2] }), 'upstream')
})

test('unknown flag, unknown file key and stray argument are errors naming them', () => {
  assert.match(configError(() => parse(['--mqtt-prot', '1']), 'mqtt-prot').message, /unknown flag --mqtt-prot; did you mean --mqtt-port\?/)
  const e = configError(() => parse([], {}, { mqttProt: 1 }), 'mqttProt')
  assert.match(e.message, /unknown key in the config file; did you mean mqttPort\?/)
  // one suggestion, not the list of every key (it ran to ~100 keys on one line)
  assert.ok(e.message.length < 200, e.message)
  assert.doesNotMatch(e.message, /upstream/)
  assert.doesNotMatch(configError(() => parse([], {}, { zzzzzz: 1 }), 'zzzzzz').message, /did you mean/)
  configError(() => parse(['1883']), '1883')
  configError(() => parse(['-p', '1883']), '-p')
})

test('nearest: a typo, a case or separator slip, a prefix; nothing for a far name', () => {
  const known = ['mqttPort', 'adminPort', 'upstream', 'upstreamProtocol', 'authFile', 'lingerMs']
  assert.equal(nearest('mqttprot', known), 'mqttPort')
  assert.equal(nearest('mqtt_port', known), 'mqttPort')
  assert.equal(nearest('upstreams', known), 'upstream')
  assert.equal(nearest('auth-file', known), 'authFile')
  assert.equal(nearest('linger', known), 'lingerMs')
  assert.equal(nearest('colour', known), undefined)
})

test('unknown env vars with the prefix are ignored (the environment is shared)', () => {
  assert.equal(parse([], { GATEWAY_NOT_A_FIELD: 'x' }).mqttPort, 1883)
})

test('int: out of range names the allowed range; non-integers and non-numbers rejected', () => {
  const e = configError(() => parse(['--mqtt-port', '70000']), 'mqttPort')
  assert.match(e.message, /0\.\.65535/)
  assert.match(e.message, /--mqtt-port/) // says where the value came from
  assert.match(configError(() => parse([], { GATEWAY_MQTT_PORT: '-1' }), 'mqttPort').message, /0\.\.65535.*GATEWAY_MQTT_PORT/)
  assert.match(configError(() => parse([], {}, { mqttPort: 65536 }), 'mqttPort').message, /0\.\.65535.*config file/)
  assert.match(configError(() => parse(['--mqtt-port', '1.5']), 'mqttPort').message, /integer/)
  assert.match(configError(() => parse(['--mqtt-port', 'abc']), 'mqttPort').message, /number/)
  assert.match(configError(() => parse(['--mqtt-port=']), 'mqttPort').message, /number/)
  configError(() => parse(['--mqtt-port', 'Infinity']), 'mqttPort')
  configError(() => parse([], {}, { mqttPort: '  ' }), 'mqttPort')
  configError(() => parse([], {}, { mqttPort: true }), 'mqttPort')
  assert.equal(parse(['--mqtt-port', '0']).mqttPort, 0)
  assert.equal(parse(['--mqtt-port', '65535']).mqttPort, 65535)
  assert.match(configError(() => parse(['--rate', '-0.5']), 'rate').message, /0\.\.1000/)
})

test('enum: a bad value lists the allowed values', () => {
  const e = configError(() => parse(['--durability', 'disk']), 'durability')
  assert.match(e.message, /process\|power/)
  assert.match(e.message, /"disk"/)
  configError(() => parse([], {}, { durability: 1 }), 'durability')
})

test('string pattern is enforced', () => {
  assert.match(configError(() => parse(['--gateway-id', 'Bad Id']), 'gatewayId').message, /must match/)
  assert.equal(parse(['--token', 's3cr3t']).token, 's3cr3t')
})

test('a value flag at the end without its value is an error', () => {
  assert.match(configError(() => parse(['--mqtt-port']), 'mqttPort').message, /needs a value/)
})

test('--config is skipped by parseConfig and found by configFileArg', () => {
  assert.equal(parse(['--config', '/etc/gw.json', '--mqtt-port', '5']).mqttPort, 5)
  assert.equal(parse(['--config=/etc/gw.json', '--mqtt-port', '6']).mqttPort, 6)
  assert.equal(configFileArg(['--mqtt-port', '1', '--config', '/a.json'], {}, 'GATEWAY'), '/a.json')
  assert.equal(configFileArg(['--config=/b.json'], {}, 'GATEWAY'), '/b.json')
  assert.equal(configFileArg([], { GATEWAY_CONFIG: '/c.json' }, 'GATEWAY'), '/c.json')
  assert.equal(configFileArg(['--config', '/a.json'], { GATEWAY_CONFIG: '/c.json' }, 'GATEWAY'), '/a.json')
  assert.equal(configFileArg([], { INGEST_CONFIG: '/c.json' }, 'GATEWAY'), undefined)
})

test('helpText lists every field with its flag, type, default and env var', () => {
  const help = helpText(schema, 'GATEWAY')
  for (const [k, spec] of Object.entries(schema)) {
    assert.ok(help.includes(`--${kebab(k)} `), `flag of ${k}`)
    assert.ok(help.includes(`[env ${envName('GATEWAY', k)}]`), `env of ${k}`)
    assert.ok(help.includes(spec.doc), `doc of ${k}`)
  }
  assert.match(help, /--mqtt-port <int> \(default 1883\)/)
  assert.match(help, /--durability <process\|power> \(default process\)/)
  assert.match(help, /--upstream <list> \(default http:\/\/a\)/)
  assert.match(help, /--token <string>\n/)
})
