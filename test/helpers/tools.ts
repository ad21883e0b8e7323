/**
 * The programs from outside node_modules that some tests run, each with the Debian package
 * that provides it. `.ci/run` installs every one of them, and README.md and CONTRIBUTING.md
 * list them (test/unit/test-rules.test.ts keeps the three lists in step with this one).
 *
 * A test that needs one calls `needTools(...)` first. A missing tool makes the test fail
 * with a message naming the package to install; it never skips, because a box without the
 * tool would otherwise pass by running less than CI does, and nobody reads a skip count.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { MOSQUITTO } from '../../scripts/throwaway-mosquitto.ts'

export const PYTHON = '/usr/bin/python3'
// where scripts/browser.ts finds it (not imported from there: that would load playwright
// into every test that asks for a tool)
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
// where scripts/throwaway-postgres.ts finds the server
const PG_BASE = '/usr/lib/postgresql'

type Tool = { package: string, what: string, present: () => boolean }

const runs = (cmd: string, args: string[]): boolean => spawnSync(cmd, args, { stdio: 'ignore', timeout: 20_000 }).status === 0
const pythonImports = (module: string): boolean => existsSync(PYTHON) && runs(PYTHON, ['-c', `import ${module}`])
const postgresServer = (): boolean => process.env.PG_BIN_DIR
  ? existsSync(join(process.env.PG_BIN_DIR, 'postgres'))
  : existsSync(PG_BASE) && readdirSync(PG_BASE).some((v) => existsSync(join(PG_BASE, v, 'bin', 'postgres')))

export const TOOLS = {
  mosquitto: { package: 'mosquitto', what: `the Mosquitto broker (${MOSQUITTO}, or MOSQUITTO_BIN)`, present: () => existsSync(MOSQUITTO) },
  mosquitto_pub: { package: 'mosquitto-clients', what: 'mosquitto_pub', present: () => runs('sh', ['-c', 'command -v mosquitto_pub']) },
  cbor2: { package: 'python3-cbor2', what: `${PYTHON} with the cbor2 module`, present: () => pythonImports('cbor2') },
  paho: { package: 'python3-paho-mqtt', what: `${PYTHON} with the paho.mqtt module`, present: () => pythonImports('paho.mqtt.client') },
  postgresql: { package: 'postgresql', what: `the PostgreSQL server binaries (${PG_BASE}/*/bin, or PG_BIN_DIR)`, present: postgresServer },
  strace: { package: 'strace', what: 'strace', present: () => runs('strace', ['-V']) },
  openssl: { package: 'openssl', what: 'the openssl CLI', present: () => runs('openssl', ['version']) },
  systemd: { package: 'systemd', what: 'systemd-analyze', present: () => runs('sh', ['-c', 'command -v systemd-analyze']) },
  chromium: { package: 'chromium', what: `Chromium (${CHROMIUM}, or CHROMIUM_PATH)`, present: () => existsSync(CHROMIUM) }
} as const satisfies Record<string, Tool>

export type ToolName = keyof typeof TOOLS

const seen = new Map<ToolName, boolean>()

/** The message a test fails with when these tools are missing, or null when all are there. */
export function missingTools (...names: ToolName[]): string | null {
  const missing = names.filter((n) => {
    if (!seen.has(n)) seen.set(n, TOOLS[n].present())
    return !seen.get(n)
  })
  if (missing.length === 0) return null
  const pkgs = [...new Set(missing.map((n) => TOOLS[n].package))]
  return `this test needs ${missing.map((n) => TOOLS[n].what).join(' and ')}: install Debian's ${pkgs.join(' ')} ` +
    `(apt-get install -y ${pkgs.join(' ')}; .ci/run installs it); a missing tool fails the test, it never skips it`
}

/** Fails the calling test, naming the Debian packages, when any of these tools is missing. */
export function needTools (...names: ToolName[]): void {
  const message = missingTools(...names)
  if (message) assert.fail(message)
}
