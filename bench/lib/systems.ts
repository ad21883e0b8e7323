/**
 * The systems under test of the intake benchmark, each started as its own process (pinned
 * to the broker core when pinning is on) on 127.0.0.1 with a port picked at start:
 *
 *   sink             instant-ack MQTT stub: the load generator's own ceiling
 *   mosquitto        Mosquitto 2.0, persistence off, no inflight/queue limits: the baseline
 *   aedes            bare Aedes 1.x, no hooks: the broker without durability
 *   gateway-power    gateway/main.ts, --durability power (fsync per group commit)
 *   gateway-process  gateway/main.ts, --durability process (no fsync)
 *   gateway-*-js     the same, compiled by tsc and run without the tsx loader (as on a Pi;
 *                    tsx's loader thread alone adds ~30 MB RSS)
 *   gateway-*-bin    the compiled gateway with the node options and environment of the
 *                    installed launcher, bin/gateway (bin/node-options, MALLOC_ARENA_MAX)
 *   gateway-*-js@REV the compiled gateway of git revision REV: a baseline in the same run
 *   (-bin@REV: the same with this checkout's launcher options)
 *
 * The gateway's upstream is an unreachable port (with a dummy token), so it only buffers; its quota is raised so
 * a run never fills it. Each start gets a fresh temp dir, removed at stop.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { type Cleanup, exists, freePort, pinned, type Proc, waitForPort } from './procs.ts'
import { launcherNodeArgs } from '../../scripts/node-options.ts'

export const ROOT = resolve(import.meta.dirname, '..', '..')
export const MOSQUITTO = '/usr/sbin/mosquitto'
export const GATEWAY_MAIN = join(ROOT, 'gateway', 'main.ts')

export type Running = {
  proc: Proc
  port: number
  /** The exact command line, as recorded in the results. */
  command: string
  stop: () => Promise<void>
}

export type StartOpts = {
  cleanup: Cleanup
  core: number | null
  echo: boolean
  /** Extra node flags for the gateway (e.g. --cpu-prof --cpu-prof-dir D). */
  gatewayNodeArgs: string[]
}

export type System = {
  name: string
  doc: string
  /** Why it cannot run here, or null. */
  unavailable: () => string | null
  version: () => string
  start: (o: StartOpts) => Promise<Running>
}

const READY_TIMEOUT_MS = 30_000

const shellQuote = (a: string): string => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`
export const commandLine = (argv: string[]): string => argv.map(shellQuote).join(' ')
const rel = (p: string): string => p.startsWith(ROOT + '/') ? p.slice(ROOT.length + 1) : p

/** A node entry that logs {"msg":"ready","mqttPort":N} on stdout. */
async function startNode (o: StartOpts, name: string, nodeArgs: string[], entry: string, args: string[], dir?: string, env?: NodeJS.ProcessEnv): Promise<Running> {
  const loader = entry.endsWith('.ts') ? ['--import', 'tsx'] : []
  const argv = pinned(o.core, [process.execPath, ...nodeArgs, ...loader, rel(entry), ...args])
  const proc = o.cleanup.spawn(name, argv, { cwd: ROOT, echo: o.echo, env: env ?? process.env })
  const stop = async (): Promise<void> => {
    await proc.stop('SIGTERM', 10_000)
    if (dir) o.cleanup.removeDir(dir)
  }
  try {
    const ready = await proc.waitFor((l) => l.msg === 'ready' && typeof l.mqttPort === 'number', READY_TIMEOUT_MS, 'ready line with mqttPort')
    return { proc, port: ready.mqttPort as number, command: commandLine(argv).replace(process.execPath, 'node'), stop }
  } catch (err) {
    await stop()
    throw err
  }
}

const builds = new Map<string, Promise<string>>()
/**
 * The gateway as a Pi runs it: tsc-compiled JavaScript, no tsx loader (docs/design.md section 9).
 * Built once per bench run into a temp dir that links the checkout's node_modules.
 */
export async function compiledBuild (cleanup: Cleanup, rev?: string): Promise<string> {
  return dirname(dirname(await compiledGateway(cleanup, rev)))
}

/**
 * The compiled gateway/main.js of the working tree, or of git revision `rev` (its
 * protocol/, common/, gateway/, ingest/ and device-sim/ taken with `git archive`, built with this
 * checkout's tsc and node_modules): a baseline measured in the same run as the change.
 */
export function compiledGateway (cleanup: Cleanup, rev?: string): Promise<string> {
  const key = rev ?? ''
  let build = builds.get(key)
  if (!build) {
    build = (async () => {
      const out = cleanup.tempDir('bench-build-')
      let project = 'tsconfig.build.json'
      let cwd = ROOT
      if (rev) {
        const src = cleanup.tempDir('bench-src-')
        // common/ came with the import rule (docs/layout.md); an older revision has none
        const files = ['protocol', 'common', 'gateway', 'ingest', 'device-sim', 'tsconfig.json', 'tsconfig.build.json', 'package.json']
          .filter((f) => spawnSync('git', ['cat-file', '-e', `${rev}:${f}`], { cwd: ROOT }).status === 0)
        const a = spawnSync('sh', ['-c', `git archive ${shellQuote(rev)} ${files.join(' ')} | tar -x -C ${shellQuote(src)}`], { cwd: ROOT, encoding: 'utf8' })
        if (a.status !== 0) throw new Error(`git archive ${rev} failed: ${a.stderr}`)
        symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'))
        cwd = src
        project = join(src, 'tsconfig.build.json')
      }
      const r = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', project, '--outDir', out, '--sourceMap', 'false'], { cwd, encoding: 'utf8' })
      const main = join(out, 'gateway', 'main.js')
      if (!exists(main)) throw new Error(`tsc build of the gateway${rev ? ` at ${rev}` : ''} failed: ${(r.stdout + r.stderr).slice(0, 500)}`)
      // the page files, as `npm run build` does (this checkout's copies, also for a `rev`)
      const c = spawnSync(process.execPath, [join(ROOT, 'scripts/copy-assets.mjs'), out], { cwd: ROOT, encoding: 'utf8' })
      if (c.status !== 0) throw new Error(`copy-assets into ${out} failed: ${c.stderr}`)
      symlinkSync(join(ROOT, 'node_modules'), join(out, 'node_modules'))
      writeFileSync(join(out, 'package.json'), JSON.stringify({ type: 'module', private: true }))
      return main
    })()
    builds.set(key, build)
  }
  return build
}

/** The node options and environment bin/gateway (the installed launcher) runs the gateway with. */
export function launcherOptions (): { nodeArgs: string[], env: Record<string, string> } {
  return { nodeArgs: launcherNodeArgs(ROOT), env: { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2' } }
}

function gateway (durability: 'power' | 'process', compiled: boolean, rev?: string, launcher = false): System {
  const name = `gateway-${durability}${launcher ? '-bin' : compiled ? '-js' : ''}${rev ? `@${rev}` : ''}`
  return {
    name,
    doc: compiled ? `gateway compiled by tsc (no tsx), --durability ${durability}${rev ? `, at git revision ${rev}` : ''}` : `gateway/main.ts --durability ${durability}`,
    unavailable: () => exists(GATEWAY_MAIN) ? null : 'gateway/main.ts does not exist yet',
    version: () => {
      if (rev) return `gateway@${spawnSync('git', ['rev-parse', '--short', rev], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() || rev} (tsc build)`
      const r = spawnSync('git', ['log', '-1', '--format=%h', '--', 'gateway'], { cwd: ROOT, encoding: 'utf8' })
      const dirty = spawnSync('git', ['status', '--porcelain', '--', 'gateway'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim() !== ''
      return `gateway@${r.stdout.trim() || 'uncommitted'}${dirty ? '+dirty' : ''}${compiled ? ' (tsc build)' : ' (tsx)'}`
    },
    start: async (o) => {
      const entry = compiled ? await compiledGateway(o.cleanup, rev) : GATEWAY_MAIN
      const dir = o.cleanup.tempDir(`bench-gw-${durability}-`)
      const args = [
        '--gateway-id', 'bench', '--data-dir', dir, '--mqtt-port', '0', '--admin-port', '0',
        '--upstream', 'http://127.0.0.1:9', '--token', 'bench-token-0123456789', '--durability', durability,
        '--max-buffer-items', '100000000', '--max-buffer-bytes', String(64 * 1024 ** 3)
      ]
      const l = launcher ? launcherOptions() : { nodeArgs: [], env: {} }
      const r = await startNode(o, name, [...l.nodeArgs, ...o.gatewayNodeArgs], entry, args, dir, { ...process.env, ...l.env, LOG_LEVEL: process.env.BENCH_GATEWAY_LOG_LEVEL ?? 'info' })
      if (launcher) r.command = `${Object.entries(l.env).map(([k, v]) => `${k}=${v}`).join(' ')} ${r.command}  # = bin/gateway`
      if (compiled) r.command = r.command.replace(entry, '$BUILD/gateway/main.js') + `  # $BUILD = tsc -p tsconfig.build.json --outDir $BUILD${rev ? ` (sources of git revision ${rev})` : ''}`
      return r
    }
  }
}

export const SYSTEMS: Record<string, System> = {
  sink: {
    name: 'sink',
    doc: 'instant-ack stub (load generator ceiling)',
    unavailable: () => null,
    version: () => 'bench/lib/sink-broker.ts',
    start: (o) => startNode(o, 'sink', [], join(ROOT, 'bench/lib/sink-broker.ts'), [])
  },
  mosquitto: {
    name: 'mosquitto',
    doc: 'Mosquitto 2.0, persistence off',
    unavailable: () => exists(MOSQUITTO) ? null : `${MOSQUITTO} not found (apt-get install mosquitto)`,
    version: () => {
      const r = spawnSync(MOSQUITTO, ['-h'], { encoding: 'utf8' })
      return `mosquitto ${/mosquitto version (\S+)/.exec(r.stdout + r.stderr)?.[1] ?? 'unknown'}`
    },
    start: async (o) => {
      const dir = o.cleanup.tempDir('bench-mosquitto-')
      const port = await freePort()
      const conf = join(dir, 'mosquitto.conf')
      // Limits off so the broker, not its configuration, sets the pace; TCP_NODELAY like the others.
      writeFileSync(conf, [
        `listener ${port} 127.0.0.1`,
        'allow_anonymous true',
        'persistence false',
        'max_inflight_messages 0',
        'max_queued_messages 0',
        'max_connections -1',
        'set_tcp_nodelay true',
        'log_dest stderr',
        'log_type error',
        'log_type warning',
        ''
      ].join('\n'))
      const argv = pinned(o.core, [MOSQUITTO, '-c', conf])
      const proc = o.cleanup.spawn('mosquitto', argv, { echo: o.echo })
      const stop = async (): Promise<void> => { await proc.stop('SIGTERM', 5000); o.cleanup.removeDir(dir) }
      try {
        await waitForPort(port, READY_TIMEOUT_MS, () => !proc.exit)
      } catch (err) {
        await stop()
        throw new Error(`mosquitto: ${(err as Error).message}. ${proc.describeTail()}`)
      }
      return { proc, port, command: `${commandLine(argv)}  # ${conf.replace(dir, '$TMP')}: ${readConf(conf)}`, stop }
    }
  },
  aedes: {
    name: 'aedes',
    doc: 'bare Aedes 1.x, no hooks',
    unavailable: () => null,
    version: () => {
      try { return `aedes ${(JSON.parse(readFileSync(join(ROOT, 'node_modules/aedes/package.json'), 'utf8')) as { version: string }).version}` } catch { return 'aedes' }
    },
    start: (o) => startNode(o, 'aedes', [], join(ROOT, 'bench/lib/aedes-broker.ts'), [])
  },
  'gateway-power': gateway('power', false),
  'gateway-process': gateway('process', false),
  'gateway-power-js': gateway('power', true),
  'gateway-process-js': gateway('process', true),
  'gateway-power-bin': gateway('power', true, undefined, true),
  'gateway-process-bin': gateway('process', true, undefined, true)
}

function readConf (path: string): string {
  return spawnSync('grep', ['-v', '^log_', path], { encoding: 'utf8' }).stdout.trim().split('\n').join('; ')
}

/**
 * `gateway` stands for both durabilities under tsx, `gateway-js` for both compiled;
 * `gateway-power-js@REV` is the compiled gateway of git revision REV (a baseline), `-bin@REV`
 * the same under the launcher's options.
 */
export function resolveSystems (list: string): System[] {
  const names: string[] = []
  for (const n of list.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (n === 'gateway') names.push('gateway-power', 'gateway-process')
    else if (n === 'gateway-js') names.push('gateway-power-js', 'gateway-process-js')
    else if (SYSTEMS[n]) names.push(n)
    else if (/^gateway-(power|process)-(js|bin)@[\w.^~/-]+$/.test(n)) {
      const [base, rev] = n.split('@') as [string, string]
      SYSTEMS[n] = gateway(base.includes('power') ? 'power' : 'process', true, rev, base.endsWith('-bin'))
      names.push(n)
    } else throw new Error(`unknown system ${n} (known: gateway, ${Object.keys(SYSTEMS).join(', ')})`)
  }
  return [...new Set(names)].map((n) => SYSTEMS[n]!)
}
