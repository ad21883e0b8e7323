/**
 * `gateway passwd FILE add-device ID | add-app NAME | remove NAME | list`: edits the
 * `--auth-file` as `mosquitto_passwd` edits Mosquitto's password file.
 *
 * - The password comes from stdin (one line; `printf 'secret\n' | gateway passwd ...`), or,
 *   on a TTY, from a prompt without echo, asked twice.
 * - Hashes are scrypt (broker/auth.ts, N=16384 r=8 p=1).
 * - Passwords are at least 16 characters (protocol/secrets.ts): a device's
 *   password guards what it may publish, and a short one falls to online guessing.
 * - The file is replaced atomically: written to a temp file in the same directory (mode
 *   0600, created exclusively), fsynced, renamed over FILE, then the directory fsynced. A
 *   crash leaves the old file or the new one, never a torn one; readers (the gateway at
 *   startup) never see a partial file. Created if missing. Two concurrent edits: the last
 *   rename wins (no lock, as mosquitto_passwd).
 * - A name is a device or an app, never both (the broker looks devices up first).
 *
 * Exit codes: 0 done, 1 operation failed (name not found, bad file), 2 usage.
 */
import { randomBytes } from 'node:crypto'
import { open, readFile, rename, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { EdgeError, isValidDeviceId } from '../../protocol/index.ts'
import { secretProblem } from '../../protocol/secrets.ts'
import { AuthFile, hashPassword } from '../broker/auth.ts'

const USAGE = 'usage: gateway passwd FILE add-device ID | add-app NAME | remove NAME | list\n' +
  '  the password is read from stdin (one line), or prompted for without echo on a terminal\n'

type Doc = { devices: Record<string, string>, apps: Record<string, string> }

/** `gateway passwd` cannot do what it was asked; `exitCode` 2 is a usage error (the usage follows). */
export class PasswdError extends EdgeError {
  static override readonly code = 'EDGE_ERR_PASSWD'
  override name = 'PasswdError'
  constructor (message: string, readonly exitCode: 1 | 2 = 1, opts: { cause?: unknown } = {}) {
    super(message, { ...opts, retryable: false })
  }
}

async function load (file: string, create: boolean): Promise<Doc> {
  let text: string
  try { text = await readFile(file, 'utf8') } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && create) return { devices: {}, apps: {} }
    throw new PasswdError(`cannot read ${file}: ${(err as Error).message}`, 1, { cause: err })
  }
  try { AuthFile.parse(text, file) } catch (err) { throw new PasswdError((err as Error).message, 1, { cause: err }) }
  const raw = JSON.parse(text) as Partial<Doc>
  return { devices: { ...raw.devices }, apps: { ...raw.apps } }
}

/** Replaces `file` atomically with `text`, mode 0600 (see the header). */
export async function writeFileAtomic (file: string, text: string): Promise<void> {
  const dir = dirname(file)
  const tmp = join(dir, `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  const fh = await open(tmp, 'wx', 0o600)
  try {
    await fh.writeFile(text)
    await fh.chmod(0o600) // the umask may have narrowed it; never wider than 0600
    await fh.sync()
  } catch (err) {
    await fh.close()
    await unlink(tmp).catch(() => {})
    throw err
  }
  await fh.close()
  try { await rename(tmp, file) } catch (err) { await unlink(tmp).catch(() => {}); throw err }
  const d = await open(dir, 'r')
  try { await d.sync() } finally { await d.close() }
}

const sorted = (o: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))

async function save (file: string, doc: Doc): Promise<void> {
  await writeFileAtomic(file, JSON.stringify({ devices: sorted(doc.devices), apps: sorted(doc.apps) }, null, 2) + '\n')
}

/** One line from a pipe, or a no-echo prompt (twice) on a TTY. */
async function readPassword (stdin: NodeJS.ReadStream, stderr: NodeJS.WritableStream): Promise<string> {
  if (!stdin.isTTY) {
    const chunks: Buffer[] = []
    for await (const c of stdin) chunks.push(c as Buffer)
    return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? ''
  }
  const first = await prompt(stdin, stderr, 'Password: ')
  const again = await prompt(stdin, stderr, 'Reenter password: ')
  if (first !== again) throw new PasswdError('passwords do not match')
  return first
}

function prompt (stdin: NodeJS.ReadStream, stderr: NodeJS.WritableStream, question: string): Promise<string> {
  stderr.write(question)
  return new Promise((resolve, reject) => {
    let buf = ''
    stdin.setRawMode(true)
    stdin.resume()
    const done = (err: Error | null): void => {
      stdin.setRawMode(false)
      stdin.pause()
      stdin.off('data', onData)
      stderr.write('\n')
      if (err) reject(err); else resolve(buf)
    }
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') { done(null); return }
        if (ch === '\u0003' || ch === '\u0004') { done(new PasswdError('cancelled', 2)); return }
        if (ch === '\u007f' || ch === '\b') buf = buf.slice(0, -1)
        else if (ch >= ' ') buf += ch
      }
    }
    stdin.on('data', onData)
  })
}

// eslint-disable-next-line no-control-regex -- control characters are what it refuses
const APP_NAME_RE = /^[^\s\u0000-\u001f$+#/]{1,64}$/

export type PasswdIo = { stdin: NodeJS.ReadStream, stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream }

/** Runs the command; returns the exit code. */
export async function passwdMain (argv: readonly string[], io: PasswdIo = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  try {
    await run(argv, io)
    return 0
  } catch (err) {
    if (!(err instanceof PasswdError)) throw err
    io.stderr.write(`gateway passwd: ${err.message}\n${err.exitCode === 2 ? USAGE : ''}`)
    return err.exitCode
  }
}

async function run (argv: readonly string[], io: PasswdIo): Promise<void> {
  const [file, cmd, name, ...rest] = argv
  if (!file || !cmd || file.startsWith('-') || rest.length > 0) throw new PasswdError('expected FILE and one command', 2)
  const doc = await load(file, cmd === 'add-device' || cmd === 'add-app')
  switch (cmd) {
    case 'list': {
      if (name !== undefined) throw new PasswdError('list takes no argument', 2)
      for (const d of Object.keys(sorted(doc.devices))) io.stdout.write(`device ${d}\n`)
      for (const a of Object.keys(sorted(doc.apps))) io.stdout.write(`app ${a}\n`)
      return
    }
    case 'add-device': case 'add-app': {
      if (name === undefined) throw new PasswdError(`${cmd} needs a name`, 2)
      const device = cmd === 'add-device'
      if (device && !isValidDeviceId(name)) throw new PasswdError(`device id ${JSON.stringify(name)} must match ^[A-Za-z0-9._-]{1,64}$`)
      if (!device && !APP_NAME_RE.test(name)) throw new PasswdError(`app name ${JSON.stringify(name)} must be 1-64 characters without spaces, control characters, $ + # or /`)
      const mine = device ? doc.devices : doc.apps
      const other = device ? doc.apps : doc.devices
      if (Object.hasOwn(other, name)) throw new PasswdError(`${JSON.stringify(name)} is already ${device ? 'an app' : 'a device'}; remove it first`)
      const password = await readPassword(io.stdin, io.stderr)
      if (password === '') throw new PasswdError('empty password')
      const weak = secretProblem(password)
      if (weak !== null) throw new PasswdError(`the password of ${device ? 'device' : 'app'} ${name} ${weak}`)
      const existed = Object.hasOwn(mine, name)
      mine[name] = await hashPassword(password)
      await save(file, doc)
      io.stderr.write(`${existed ? 'updated' : 'added'} ${device ? 'device' : 'app'} ${name} in ${file}\n`)
      return
    }
    case 'remove': {
      if (name === undefined) throw new PasswdError('remove needs a name', 2)
      const kind = Object.hasOwn(doc.devices, name) ? 'device' : Object.hasOwn(doc.apps, name) ? 'app' : null
      if (kind === null) throw new PasswdError(`${JSON.stringify(name)} is not in ${file}`)
      delete (kind === 'device' ? doc.devices : doc.apps)[name]
      await save(file, doc)
      io.stderr.write(`removed ${kind} ${name} from ${file}\n`)
      return
    }
    default:
      throw new PasswdError(`unknown command ${JSON.stringify(cmd)}`, 2)
  }
}
