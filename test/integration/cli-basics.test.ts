/**
 * The small things a new user trips over. `--version` on every CLI;
 * LOG_LEVEL and LOG_FORMAT in every --help; LOG_FORMAT=pretty for a terminal; one
 * `component` key per ingest log line; default metrics named `gateway_process_*`, not
 * `gateway_process_process_*`; bin entries executable after the build's postbuild step.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Gateway, parseGatewayConfig } from '../../gateway/index.ts'
import { VERSION } from '../../protocol/index.ts'
import { runCli } from '../helpers/cli.ts'
import { ROOT, tempDir, waitFor } from '../helpers/index.ts'
import { silentLogger } from '../helpers/gateway.ts'

const CLIS = ['gateway/main.ts', 'ingest/main.ts', 'device-sim/main.ts']

test('every CLI prints the package version for --version, and LOG_LEVEL/LOG_FORMAT in --help', async (t) => {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  assert.equal(VERSION, pkg.version, 'protocol/version.ts must match package.json')
  const runs = await Promise.all([...CLIS, 'scripts/start.ts'].map((c) => runCli(t, c, ['--version'], 90_000)))
  for (const [i, r] of runs.entries()) {
    assert.equal(r.code, 0, `${i}: ${r.stderr}`)
    assert.match(r.stdout, new RegExp(` ${pkg.version.replace(/\./g, '\\.')}\\n$`))
  }
  const helps = await Promise.all(CLIS.map((c) => runCli(t, c, ['--help'], 90_000)))
  for (const r of helps) {
    assert.equal(r.code, 0)
    assert.match(r.stdout, /LOG_LEVEL=/)
    assert.match(r.stdout, /LOG_FORMAT=json\|pretty/)
  }
})

/** Spawns a long-running CLI, waits until its stdout matches `until`, stops it (SIGTERM), returns stdout. */
async function outputUntil (t: { after: (fn: () => unknown) => void }, entry: string, args: string[], env: Record<string, string>, until: RegExp): Promise<string> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, entry), ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.after(() => proc.kill('SIGKILL'))
  let out = ''
  proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise((resolve) => proc.on('exit', resolve))
  await waitFor(() => until.test(out), { timeoutMs: 90_000, what: `${entry} output ${until}: ${out}` })
  proc.kill('SIGTERM')
  await exited
  return out
}

test('ingest log lines carry one component key', async (t) => {
  const out = await outputUntil(t, 'ingest/main.ts', ['--port', '0', '--data-dir', await tempDir(t), '--token', 'gw1:secret-pad-01234', '--chaos-retry-rate', '0.1'], {}, /"ready"/)
  const lines = out.trim().split('\n')
  assert.ok(lines.length >= 2, out)
  for (const l of lines) assert.ok((l.match(/"component":/g) ?? []).length <= 1, `duplicated component key: ${l}`)
  assert.ok(lines.some((l) => /"component":"chaos"/.test(l)), out)
})

test('LOG_FORMAT=pretty writes human-readable lines', async (t) => {
  const out = await outputUntil(t, 'gateway/main.ts', ['--host', '127.0.0.1', '--mqtt-port', '0', '--admin-port', '0', '--data-dir', await tempDir(t)], { LOG_FORMAT: 'pretty' }, /ready/)
  const ready = out.split('\n').find((l) => /ready/.test(l))!
  assert.doesNotMatch(ready, /^\{/)
  assert.match(ready, /INFO.*ready/)
  assert.match(out, /mqttPort: \d+/)
})

test('default process metrics are named gateway_process_*, not gateway_process_process_*', async (t) => {
  const base = parseGatewayConfig({ argv: [], env: {} })
  const gw = await Gateway.create({ ...base, host: '127.0.0.1', mqttPort: 0, adminPort: 0, dataDir: await tempDir(t) }, silentLogger, { defaultMetrics: true })
  t.after(() => gw.close())
  const text = await (await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`)).text()
  assert.doesNotMatch(text, /gateway_process_process_/)
  assert.match(text, /^gateway_process_cpu_user_seconds_total /m)
  assert.match(text, /^gateway_nodejs_heap_size_used_bytes /m)
})

test('postbuild makes every bin entry an executable with a node shebang', async (t) => {
  const dir = await tempDir(t)
  await mkdir(join(dir, 'dist'))
  await writeFile(join(dir, 'package.json'), JSON.stringify({ bin: { hello: 'dist/hello.js' } }))
  await writeFile(join(dir, 'dist', 'hello.js'), 'console.log("hello " + process.argv[2])\n')
  await promisify(execFile)(process.execPath, [join(ROOT, 'scripts', 'postbuild.mjs'), dir])
  assert.equal((await stat(join(dir, 'dist', 'hello.js'))).mode & 0o111, 0o111)
  const { stdout } = await promisify(execFile)(join(dir, 'dist', 'hello.js'), ['world'])
  assert.equal(stdout, 'hello world\n')
})
