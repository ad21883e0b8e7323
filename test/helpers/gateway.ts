/** In-process gateway and MQTT client helpers for integration tests. */
import { pino } from 'pino'
import mqtt, { type MqttClient } from 'mqtt'
import { Gateway, parseGatewayConfig, type GatewayConfig } from '../../gateway/index.ts'
import type { BatchUpstream } from '../../gateway/flush/index.ts'
import { encodeCbor, wireUint } from '../../protocol/index.ts'
import { join } from 'node:path'
import { launcherNodeArgs } from '../../scripts/node-options.ts'
import { ROOT, tempDir, waitFor, type Child } from './index.ts'

export const silentLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

type T = { after: (fn: () => unknown) => void }

/** `opts.upstream`: a fake upstream in process instead of the one `overrides.upstream` names. */
export async function startGateway (t: T, overrides: Partial<GatewayConfig> = {}, opts: { upstream?: BatchUpstream } = {}): Promise<Gateway> {
  const base = parseGatewayConfig({ argv: [], env: {} })
  const dataDir = overrides.dataDir ?? await tempDir(t)
  const gw = await Gateway.create({ ...base, host: '127.0.0.1', mqttPort: 0, adminPort: 0, ...overrides, dataDir }, silentLogger, opts)
  t.after(() => gw.close())
  return gw
}

export async function connectDevice (t: T, port: number, id: string, opts: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: id, clean: true, reconnectPeriod: 0, connectTimeout: 5000, ...opts })
  t.after(() => c.endAsync(true).catch(() => {}))
  return c
}

export function reading (seq: number | null, extra: Record<string, unknown> = {}): Buffer {
  return encodeCbor({ ...(seq === null ? {} : { seq }), boot: 1, ts: wireUint(Date.now()), values: { t: 21.5, h: 40 }, ...extra })
}

/** Publishes at QoS 1 and resolves on PUBACK; rejects if the connection closes first. */
export function publish (c: MqttClient, topic: string, payload: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onClose = (): void => reject(new Error('connection closed before PUBACK'))
    c.once('close', onClose)
    c.publish(topic, payload, { qos: 1 }, (err) => {
      c.off('close', onClose)
      if (err) reject(err); else resolve()
    })
  })
}

/**
 * How bin/gateway starts the gateway, for a gateway CLI spawned under tsx (`spawnCli`'s
 * `nodeArgs` and `env`): the V8 options of bin/node-options (scripts/node-options.ts reads
 * them as the launcher does) and the launcher's MALLOC_ARENA_MAX. A memory bound measured on
 * node's default options measures a gateway nobody runs. `liveHeap` adds
 * `--expose-gc` and bench/lib/gc-report.cjs, so `liveHeapOf` can ask for the live heap.
 */
export function asDeployed (opts: { liveHeap?: boolean } = {}): { nodeArgs: string[], env: Record<string, string> } {
  const gc = opts.liveHeap ? ['--expose-gc', '-r', join(ROOT, 'bench', 'lib', 'gc-report.cjs')] : []
  // bin/gateway: MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
  return { nodeArgs: [...launcherNodeArgs(ROOT), ...gc], env: { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2' } }
}

export type LiveHeap = { heapUsedMb: number, externalMb: number, rssMb: number }

/**
 * The memory a child started with `asDeployed({ liveHeap: true })` really holds: SIGUSR2
 * makes it run two full GCs and print heap used, external (Buffers) and RSS. Unlike RSS
 * (how far V8 let the heap grow before its next GC), this moves only with what the code
 * keeps alive.
 */
export async function liveHeapOf (child: Child, timeoutMs = 10_000): Promise<LiveHeap> {
  const before = child.lines.length
  child.proc.kill('SIGUSR2')
  const line = await waitFor(() => child.lines.slice(before).find((l) => l.msg === 'live-heap'), { timeoutMs, what: 'live-heap line after SIGUSR2' })
  return line as unknown as LiveHeap
}
