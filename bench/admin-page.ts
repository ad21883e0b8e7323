/**
 * What the operator page costs the gateway: the gateway and ingest CLIs under a
 * steady open-loop load (default 5,000 readings/s from 200 devices), the gateway's CPU
 * measured over alternating windows with no viewer and with the gateway page open in
 * headless Chromium (the SSE stream, the devices table poll every 2 s, the dead-letter list).
 * Windows alternate closed, open, closed, open... so drift on a shared box hits both sides.
 *
 *   node --import tsx bench/admin-page.ts [--rate 5000] [--connections 200] [--window-s 15] [--pairs 2]
 *
 * Appends two records to bench/results/admin-page.jsonl: system `page-closed` (the
 * baseline) and `page-open`, each with the CPU % of gateway/ingest/loadgen averaged over
 * its windows. The difference in gateway CPU is the admin server's cost of a viewer; the
 * browser runs on the same box here (in the field it is on the operator's machine), so
 * its own CPU use shows as noise in the other processes, not in the gateway's figure.
 */
import { join } from 'node:path'
import { bool, helpText, num, parseFlags, str, type FlagSpec } from './lib/args.ts'
import { Cleanup, cpuSeconds } from './lib/procs.ts'
import { appendRecord, gitSha, hostInfo } from './lib/results.ts'
import { commandLine, ROOT } from './lib/systems.ts'
import { launchBrowser } from '../scripts/browser.ts'

const FLAGS: FlagSpec = {
  rate: { type: 'number', default: 5000, doc: 'offered readings/s' },
  connections: { type: 'number', default: 200, doc: 'devices (MQTT connections)' },
  'window-s': { type: 'number', default: 15, doc: 'seconds per measured window' },
  pairs: { type: 'number', default: 2, doc: '(closed, open) window pairs' },
  durability: { type: 'string', default: 'process', doc: 'gateway --durability (process: fsync stalls of a shared disk do not make the load bursty)' },
  write: { type: 'bool', default: true, doc: 'append to bench/results/admin-page.jsonl' },
  echo: { type: 'bool', default: false, doc: 'echo child output' }
}

const node = (script: string, args: string[]): string[] => [process.execPath, '--import', 'tsx', script, ...args]
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function main (): Promise<void> {
  const f = parseFlags(process.argv.slice(2), FLAGS)
  if (f.get('help')) { process.stdout.write(helpText(FLAGS) + '\n'); return }
  const cleanup = new Cleanup()
  const afters: Array<() => unknown> = []
  const echo = bool(f, 'echo')
  const dir = cleanup.tempDir('bench-admin-page-')
  const quiet = { ...process.env, LOG_LEVEL: 'error' }
  const rate = num(f, 'rate')
  const windowS = num(f, 'window-s')
  const pairs = num(f, 'pairs')
  const ingest = cleanup.spawn('ingest', node('ingest/main.ts', ['--port', '0', '--data-dir', join(dir, 'ingest'), '--token', 'bench:secret-pad-01234']), { cwd: ROOT, env: quiet, echo })
  const ingestPort = (await ingest.waitFor((o) => o.msg === 'ready', 30_000, 'ingest ready')).port as number
  const gw = cleanup.spawn('gateway', node('gateway/main.ts', ['--gateway-id', 'bench', '--data-dir', join(dir, 'gateway'), '--host', '127.0.0.1',
    '--mqtt-port', '0', '--admin-port', '0', '--upstream', `http://127.0.0.1:${ingestPort}`, '--token', 'secret-pad-01234', '--no-receipts', '--durability', str(f, 'durability')!]), { cwd: ROOT, env: quiet, echo })
  const ready = await gw.waitFor((o) => o.msg === 'ready', 30_000, 'gateway ready')
  const adminUrl = `http://127.0.0.1:${String(ready.adminPort)}/`
  // the browser starts before the load, so its launch does not eat into a window
  const ctx = await launchBrowser({ after: (fn) => { afters.push(fn) } })
  const total = pairs * 2 * windowS + 120 // stopped when the windows are done
  const lg = cleanup.spawn('loadgen', node('bench/loadgen.ts', ['--port', String(ready.mqttPort), '--connections', String(num(f, 'connections')),
    '--rate', String(rate), '--duration-s', String(total), '--warmup-s', '5', '--id-prefix', 'page-']), { cwd: ROOT, echo })
  await lg.waitFor((o) => o.type === 'phase' && o.phase === 'measure', 120_000, 'loadgen measure phase')
  const pids = [gw.pid, ingest.pid, lg.pid]
  const sums = { closed: [0, 0, 0], open: [0, 0, 0] }
  const acked = { closed: 0, open: 0 }
  const ackedCount = async (): Promise<number> => {
    const text = await (await fetch(`${adminUrl}metrics`)).text()
    return Number(/gateway_intake_readings_total\{outcome="stored"\} (\d+)/.exec(text)?.[1] ?? 0)
  }
  for (let i = 0; i < pairs * 2; i++) {
    const state = i % 2 === 0 ? 'closed' : 'open'
    const page = state === 'open' ? await ctx.newPage() : null
    if (page) { await page.goto(adminUrl, { timeout: 120_000, waitUntil: 'domcontentloaded' }); await page.waitForSelector('#ready-pill.ok', { timeout: 60_000 }) }
    const c0 = pids.map((p) => cpuSeconds(p) ?? NaN)
    const a0 = await ackedCount()
    const t0 = performance.now()
    await sleep(windowS * 1000)
    const dt = (performance.now() - t0) / 1000
    const c1 = pids.map((p) => cpuSeconds(p) ?? NaN)
    acked[state] += (await ackedCount()) - a0
    c1.forEach((c, j) => { sums[state][j]! += (c - c0[j]!) * 100 / dt })
    process.stderr.write(`window ${i + 1} (${state}): CPU % gateway/ingest/loadgen ${c1.map((c, j) => ((c - c0[j]!) * 100 / dt).toFixed(1)).join('/')}\n`)
    if (page) await page.close()
  }
  for (const fn of afters) await fn()
  if (lg.exit) throw new Error(`the load generator exited during the windows (${lg.exit.code ?? lg.exit.signal}): ${lg.stderrTail.slice(-5).join(' | ')} ${lg.tail.filter((l) => !l.includes('"tick"')).slice(-3).join(' | ').slice(0, 2000)}`)
  await lg.stop('SIGKILL')
  const runId = new Date().toISOString().replace(/[:.]/g, '').slice(0, 15) + '-' + process.pid
  const pct = (s: 'closed' | 'open'): { gateway: number, ingest: number, loadgen: number } => {
    const [g, i, l] = sums[s].map((x) => Number((x / pairs).toFixed(1))) as [number, number, number]
    return { gateway: g, ingest: i, loadgen: l }
  }
  const rows: string[] = []
  for (const s of ['closed', 'open'] as const) {
    const cpuPct = pct(s)
    const msgsPerSec = Math.round(acked[s] / (pairs * windowS))
    const rec = {
      scenario: 'admin-page', kind: 'result' as const, runId, ts: new Date().toISOString(), gitSha: gitSha(), node: process.version, host: hostInfo('not pinned'),
      system: `page-${s}`, ...(s === 'open' ? { baseline: 'page-closed' } : {}), params: { rate, connections: num(f, 'connections'), windowS, pairs, durability: str(f, 'durability')! },
      msgsPerSec, cpuPct, cpuUsPerMsgByProc: { gateway: Number((cpuPct.gateway * 1e4 / Math.max(1, msgsPerSec)).toFixed(1)), ingest: Number((cpuPct.ingest * 1e4 / Math.max(1, msgsPerSec)).toFixed(1)), loadgen: Number((cpuPct.loadgen * 1e4 / Math.max(1, msgsPerSec)).toFixed(1)) },
      command: commandLine(['node', '--import', 'tsx', 'bench/admin-page.ts', ...process.argv.slice(2)])
    }
    process.stdout.write(JSON.stringify(rec) + '\n')
    if (bool(f, 'write')) appendRecord('admin-page.jsonl', rec)
    rows.push(`page ${s.padEnd(6)}: ${msgsPerSec} readings/s stored, CPU % gateway/ingest/loadgen ${cpuPct.gateway}/${cpuPct.ingest}/${cpuPct.loadgen}`)
  }
  const d = pct('open').gateway - pct('closed').gateway
  rows.push(`the page open costs the gateway ${d >= 0 ? '+' : ''}${d.toFixed(1)} % of a core (${(pct('open').gateway / Math.max(0.1, pct('closed').gateway)).toFixed(3)}x)`)
  await gw.stop()
  await ingest.stop()
  cleanup.killAll()
  process.stderr.write('\n' + rows.join('\n') + '\n')
}

main().catch((err: Error) => { process.stderr.write(`admin-page bench failed: ${err.stack ?? err.message}\n`); process.exit(1) })
