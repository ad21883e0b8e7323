/** `gateway passwd` (the real CLI): add, update, remove, list; mode 0600; atomic replace; the gateway accepts the file. */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmod, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough, Readable } from 'node:stream'
import mqtt from 'mqtt'
import { passwdMain } from '../../gateway/cli/passwd.ts'
import { ROOT, tempDir } from '../helpers/index.ts'
import { startGateway } from '../helpers/gateway.ts'

type Run = { code: number | null, out: string, err: string }

/** The real CLI in a child process (slow under tsx: used for the first and the last steps). */
function cli (args: string[], stdin = ''): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', 'gateway/main.ts', 'passwd', ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    p.stdout.on('data', (c) => { out += String(c) })
    p.stderr.on('data', (c) => { err += String(c) })
    p.on('exit', (code) => resolve({ code, out, err }))
    p.stdin.end(stdin)
  })
}

/** The same command in-process (what main.ts dispatches to), stdin a pipe. */
async function passwd (args: string[], stdin = ''): Promise<Run> {
  let out = ''
  let err = ''
  const sink = (f: (s: string) => void): PassThrough => { const p = new PassThrough(); p.on('data', (c) => f(String(c))); return p }
  const code = await passwdMain(args, { stdin: Readable.from([Buffer.from(stdin)]) as unknown as NodeJS.ReadStream, stdout: sink((x) => { out += x }), stderr: sink((x) => { err += x }) })
  return { code, out, err }
}

test('passwd: add-device, add-app, update, remove, list; the file is 0600 and replaced atomically', async (t) => {
  const dir = await tempDir(t)
  const file = join(dir, 'auth.json')
  let r = await cli([file, 'add-device', 'sensor-1'], 's1-pass-pad-0123456789\n')
  assert.equal(r.code, 0, r.err)
  assert.match(r.err, /added device sensor-1/)
  assert.equal((await stat(file)).mode & 0o777, 0o600, 'created with mode 0600')
  r = await passwd([file, 'add-app', 'dashboard'], 'dash-pass-pad-0123456789\n')
  assert.equal(r.code, 0, r.err)
  // a file someone made world-readable is replaced by a 0600 one (a new inode: rename, not rewrite)
  await chmod(file, 0o644)
  const inode = (await stat(file)).ino
  const before = JSON.parse(await readFile(file, 'utf8')) as { devices: Record<string, string> }
  r = await passwd([file, 'add-device', 'sensor-1'], 'new-pass-pad-0123456789\n')
  assert.match(r.err, /updated device sensor-1/)
  const st = await stat(file)
  assert.equal(st.mode & 0o777, 0o600)
  assert.notEqual(st.ino, inode, 'the file is replaced by rename')
  const after = JSON.parse(await readFile(file, 'utf8')) as { devices: Record<string, string>, apps: Record<string, string> }
  assert.notEqual(after.devices['sensor-1'], before.devices['sensor-1'])
  assert.match(after.devices['sensor-1']!, /^scrypt\$16384\$8\$1\$/)
  assert.deepEqual((await readdir(dir)).filter((f) => f !== 'auth.json'), [], 'no temp file left behind')
  r = await cli([file, 'list'])
  assert.equal(r.out, 'device sensor-1\napp dashboard\n')
  // a name is a device or an app, never both; bad ids and empty passwords are refused
  assert.equal((await passwd([file, 'add-app', 'sensor-1'], 'x-pad-0123456789\n')).code, 1)
  assert.equal((await passwd([file, 'add-device', 'bad/id'], 'x-pad-0123456789\n')).code, 1)
  assert.equal((await passwd([file, 'add-device', 'sensor-2'], '\n')).code, 1)
  // an operator-chosen password has at least 16 characters
  const weak = await passwd([file, 'add-device', 'sensor-2'], 'fifteen-chars-x\n')
  assert.equal(weak.code, 1)
  assert.match(weak.err, /password of device sensor-2 must be at least 16 characters/)
  assert.equal((await passwd([file, 'add-device', 'sensor-2'], 'sixteen-chars-xx\n')).code, 0)
  assert.equal((await passwd([file, 'remove', 'sensor-2'])).code, 0)
  assert.equal((await cli([file, 'frobnicate'])).code, 2, 'usage errors exit 2')
  // the gateway accepts what the CLI wrote
  const gw = await startGateway(t, { auth: 'file', authFile: file })
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${gw.mqttPort}`, { clientId: 'sensor-1', username: 'sensor-1', password: 'new-pass-pad-0123456789', reconnectPeriod: 0 })
  await c.endAsync()
  r = await passwd([file, 'remove', 'dashboard'])
  assert.equal(r.code, 0)
  assert.equal((await passwd([file, 'list'])).out, 'device sensor-1\n')
  assert.equal((await passwd([file, 'remove', 'dashboard'])).code, 1, 'removing an unknown name fails')
})

test('passwd: a corrupt file is reported, not overwritten', async (t) => {
  const file = join(await tempDir(t), 'auth.json')
  await writeFile(file, '{ not json')
  const r = await passwd([file, 'add-device', 'sensor-1'], 'x-pad-0123456789\n')
  assert.equal(r.code, 1)
  assert.match(r.err, /not valid JSON/)
  assert.equal(await readFile(file, 'utf8'), '{ not json')
})
