/**
 * Install on a Raspberry Pi (issue 11): the systemd unit passes `systemd-analyze verify`
 * and keeps its hardening, the example config is one the gateway accepts, the launcher
 * runs the compiled entry, and a production install (`npm ci --omit=dev`) has every package
 * the compiled programs import. Needs `systemd-analyze` (Debian package `systemd`).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { needTools } from '../helpers/tools.ts'
import { parseGatewayConfig } from '../../gateway/config.ts'

const ROOT = resolve(import.meta.dirname, '..', '..')
const UNIT = join(ROOT, 'deploy', 'systemd', 'edge-gateway.service')

/** Runs systemd-analyze verify on `text` (ExecStart pointed at this checkout's launcher, which exists here). */
function verify (t: { after: (fn: () => void) => void }, text: string): { status: number | null, out: string } {
  needTools('systemd')
  const dir = mkdtempSync(join(tmpdir(), 'unit-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'edge-gateway.service')
  writeFileSync(file, text.replace('/opt/edge-gateway/bin/gateway', join(ROOT, 'bin', 'gateway')))
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', file], { encoding: 'utf8', env: { ...process.env, SYSTEMD_LOG_LEVEL: 'warning' } })
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() }
}

test('the systemd unit passes systemd-analyze verify with no warning', (t) => {
  const r = verify(t, readFileSync(UNIT, 'utf8'))
  assert.equal(r.status, 0, r.out)
  assert.equal(r.out, '', `systemd-analyze printed: ${r.out}`)
})

test('systemd-analyze verify catches a broken unit (the check above can fail)', (t) => {
  const r = verify(t, readFileSync(UNIT, 'utf8').replace('ProtectSystem=strict', 'ProtectSystem=strict\nRestartt=always'))
  assert.match(r.out, /Unknown key '?Restartt'?/)
})

test('the unit keeps its hardening and resource limits', () => {
  const text = readFileSync(UNIT, 'utf8')
  const has = (line: RegExp, why: string): void => assert.match(text, line, why)
  has(/^User=edge-gateway$/m, 'its own user')
  has(/^StateDirectory=edge-gateway$/m, 'the store in /var/lib/edge-gateway')
  has(/^ProtectSystem=strict$/m, 'read-only file system but for the state dir')
  has(/^NoNewPrivileges=yes$/m, 'no privilege escalation')
  has(/^MemoryMax=\d+M$/m, 'memory bounded')
  has(/^Restart=on-failure$/m, 'restarted after a crash')
  has(/^LimitNOFILE=\d+$/m, 'a descriptor per connection')
  has(/^StandardOutput=journal$/m, 'logs to the journal')
  has(/^ExecStart=\/opt\/edge-gateway\/bin\/gateway --config \/etc\/edge-gateway\/gateway\.json$/m, 'the launcher with the config in /etc')
})

test('the example /etc config is one the gateway accepts, with the store in the StateDirectory', () => {
  const file = JSON.parse(readFileSync(join(ROOT, 'deploy', 'gateway.json'), 'utf8')) as Record<string, unknown>
  const c = parseGatewayConfig({ argv: [], env: {}, file })
  assert.equal(c.dataDir, '/var/lib/edge-gateway')
  assert.equal(c.durability, 'power')
})

test('the launcher runs the compiled gateway with its node options', () => {
  const launcher = join(ROOT, 'bin', 'gateway')
  assert.ok(statSync(launcher).mode & 0o111, 'bin/gateway is executable')
  assert.equal(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).bin.gateway, 'bin/gateway')
  // NODE=echo shows the command it would exec
  const r = spawnSync(launcher, ['--help'], { encoding: 'utf8', env: { ...process.env, NODE: 'echo', MALLOC_ARENA_MAX: '' } })
  assert.equal(r.status, 0, r.stderr)
  const opts = readFileSync(join(ROOT, 'bin', 'node-options'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#')).join(' ')
  assert.equal(r.stdout.trim(), `${opts} ${join(ROOT, 'bin')}/../dist/gateway/main.js --help`)
  const over = spawnSync(launcher, [], { encoding: 'utf8', env: { ...process.env, NODE: 'echo', GATEWAY_NODE_OPTIONS: '--max-old-space-size=99' } })
  assert.match(over.stdout, /^--max-old-space-size=99 \S+main\.js$/m, 'GATEWAY_NODE_OPTIONS replaces the defaults')
})

test('a production install has what the compiled programs import: runtime packages are dependencies, tools are devDependencies', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>, devDependencies: Record<string, string> }
  for (const tool of ['tsx', 'typescript']) {
    assert.ok(!(tool in pkg.dependencies), `${tool} is a build tool: devDependencies, so npm ci --omit=dev leaves it (and esbuild) out`)
  }
  const imported = new Set<string>()
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name)
      if (e.isDirectory()) walk(p)
      else if (e.name.endsWith('.ts')) {
        for (const m of readFileSync(p, 'utf8').matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'([^'.][^']*)'|import\('([^'.][^']*)'\)/gm)) {
          const spec = m[1] ?? m[2]!
          if (spec.startsWith('node:') || builtinModules.includes(spec)) continue
          imported.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!)
        }
      }
    }
  }
  for (const d of ['protocol', 'common', 'gateway', 'ingest', 'device-sim']) walk(join(ROOT, d))
  assert.ok(imported.has('aedes') && imported.has('level'), `found the runtime imports (${[...imported].join(', ')})`)
  for (const m of imported) assert.ok(m in pkg.dependencies, `${m} is imported at run time but is not in dependencies`)
})
