/**
 * Who may produce which device's readings through a topic mapping
 * (gateway/mapping/publisher.ts; the table in docs/mapping.md), row by row.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import type { Principal } from '../../gateway/broker/acl.ts'
import { mappedDenial } from '../../gateway/mapping/index.ts'

const dflt = { clientIdMustMatch: false, anyDevice: false }
const bridge = { clientIdMustMatch: false, anyDevice: true }
const strict = { clientIdMustMatch: true, anyDevice: false }
const device: Principal = { role: 'device', name: 'sensor-1' }
const app: Principal = { role: 'app', name: 'dash' }
const anonymous: Principal = { role: 'anonymous' }
/** undefined: a client without security state (treated as anonymous) */
const deviceLike: Array<Principal | undefined> = [device, anonymous, undefined]

test('the client whose id is the device id may always produce its readings', () => {
  for (const m of [dflt, bridge, strict]) {
    for (const p of deviceLike) assert.equal(mappedDenial(m, p, 'sensor-1', 'sensor-1'), null)
  }
})

test('a device principal, an anonymous client (--auth none) or one without state: its own id only, unless anyDevice', () => {
  for (const p of deviceLike) {
    assert.equal(mappedDenial(dflt, p, 'sensor-1', 'sensor-7'), 'other_device', `${p?.role ?? 'no state'}, default mapping`)
    assert.equal(mappedDenial(bridge, p, 'sensor-1', 'sensor-7'), null, `${p?.role ?? 'no state'}, anyDevice`)
    assert.equal(mappedDenial(strict, p, 'sensor-1', 'sensor-7'), 'client_id', `${p?.role ?? 'no state'}, clientIdMustMatch`)
  }
})

test('an app may produce any device\'s readings, except on a clientIdMustMatch mapping', () => {
  assert.equal(mappedDenial(dflt, app, 'dash-1', 'sensor-7'), null)
  assert.equal(mappedDenial(bridge, app, 'dash-1', 'sensor-7'), null)
  assert.equal(mappedDenial(strict, app, 'dash-1', 'sensor-7'), 'client_id')
})
