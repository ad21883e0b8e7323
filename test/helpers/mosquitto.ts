/**
 * A real Mosquitto 2.0 (Debian's /usr/sbin/mosquitto) as the cloud broker of the MQTT
 * upstream tests: scripts/throwaway-mosquitto.ts (shared with `npm start -- --upstream mqtt`
 * and the benches) in a temp dir, killed after the test.
 */
import type { ChildProcess } from 'node:child_process'
import { MOSQUITTO, ThrowawayMosquitto } from '../../scripts/throwaway-mosquitto.ts'
import { tempDir } from './index.ts'

// no `haveMosquitto` here: a test that needs Mosquitto calls needTools('mosquitto') (tools.ts) and fails without it
export { MOSQUITTO }

export type Mosquitto = { port: number, url: string, proc: ChildProcess, log: string[], dir: string, kill: (signal?: NodeJS.Signals) => Promise<void> }

type T = { after: (fn: () => unknown) => void }

export async function startMosquitto (t: T, opts: { persistence?: boolean, dir?: string, port?: number, extra?: string[], tlsListener?: string[] } = {}): Promise<Mosquitto> {
  const dir = opts.dir ?? await tempDir(t, 'mosquitto-')
  const m = await ThrowawayMosquitto.start({ ...opts, dir })
  const kill = (signal?: NodeJS.Signals): Promise<void> => m.kill(signal)
  t.after(() => kill())
  return { port: m.port, url: m.url, proc: m.proc, log: m.log, dir, kill }
}
