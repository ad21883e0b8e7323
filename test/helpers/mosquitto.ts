/**
 * A real Mosquitto 2.0 (Debian's /usr/sbin/mosquitto) as the cloud broker of the MQTT
 * upstream tests: its own config file in a temp dir, a free port on 127.0.0.1, killed
 * after the test. Persistence is off unless asked for (a restart test).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { freePort, waitForPort } from '../../bench/lib/procs.ts'
import { tempDir } from './index.ts'

export const MOSQUITTO = '/usr/sbin/mosquitto'
export const haveMosquitto = existsSync(MOSQUITTO)

export type Mosquitto = { port: number, url: string, proc: ChildProcess, log: string[], dir: string, kill: (signal?: NodeJS.Signals) => Promise<void> }

type T = { after: (fn: () => unknown) => void }

export async function startMosquitto (t: T, opts: { persistence?: boolean, dir?: string, port?: number, extra?: string[], tlsListener?: string[] } = {}): Promise<Mosquitto> {
  const dir = opts.dir ?? await tempDir(t, 'mosquitto-')
  const port = opts.port ?? await freePort()
  const conf = join(dir, 'mosquitto.conf')
  await writeFile(conf, [
    `listener ${port} 127.0.0.1`,
    // a TLS listener: cafile, certfile, keyfile, require_certificate... (these apply to it)
    ...(opts.tlsListener ?? []),
    'allow_anonymous true',
    // started as root, mosquitto drops to user mosquitto, who cannot read our 0700 temp dirs
    ...(process.getuid?.() === 0 ? ['user root'] : []),
    `persistence ${opts.persistence ? 'true' : 'false'}`,
    ...(opts.persistence ? [`persistence_location ${dir}/`, 'autosave_interval 1'] : []),
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    ...(opts.extra ?? []),
    ''
  ].join('\n'))
  const proc = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] })
  const log: string[] = []
  proc.stderr!.on('data', (b: Buffer) => log.push(b.toString()))
  let alive = true
  const exited = new Promise<void>((resolve) => proc.on('exit', () => { alive = false; resolve() }))
  const kill = async (signal: NodeJS.Signals = 'SIGKILL'): Promise<void> => {
    if (!alive) return
    proc.kill(signal)
    await exited
  }
  t.after(() => kill())
  await waitForPort(port, 10_000, () => alive).catch((err: Error) => { throw new Error(`${err.message}: ${log.join('').slice(0, 2000)}`) })
  return { port, url: `mqtt://127.0.0.1:${port}`, proc, log, dir, kill }
}
