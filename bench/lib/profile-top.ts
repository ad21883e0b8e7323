/**
 * Top frames of a V8 `.cpuprofile` (from `node --cpu-prof`, e.g. bench/intake.ts
 * --cpu-prof-dir DIR): self time per function and inclusive time per function, so a
 * benchmark miss comes with where the time went.
 *
 *   node --import tsx bench/lib/profile-top.ts FILE.cpuprofile [--top 25] [--filter gateway/]
 *     [--from-s S] [--to-s S] [--busy]   (a time span of the profile; --busy leaves out idle time)
 */
import { readFileSync } from 'node:fs'

type Node = { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
type Profile = { nodes: Node[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

export type Frame = { name: string, selfMs: number, totalMs: number, selfPct: number, totalPct: number }

/** `fromS`/`toS`: only samples in that span (seconds from the profile start), e.g. the measured window. */
export function topFrames (p: Profile, opts: { fromS?: number, toS?: number, busy?: boolean } = {}): { totalMs: number, frames: Frame[] } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const selfUs = new Map<number, number>()
  const from = (opts.fromS ?? 0) * 1e6
  const to = (opts.toS ?? Infinity) * 1e6
  let t = 0
  p.samples.forEach((id, i) => {
    const dt = p.timeDeltas[i] ?? 0
    t += dt
    if (t < from || t > to) return
    if (opts.busy && byId.get(id)!.callFrame.functionName === '(idle)') return
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt)
  })
  const key = (n: Node): string => {
    const url = n.callFrame.url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, 'node_modules/').replace(/^.*\/(gateway|protocol|bench)\//, '$1/')
    return `${n.callFrame.functionName || '(anonymous)'} ${url ? `${url}:${n.callFrame.lineNumber + 1}` : ''}`.trim()
  }
  const self = new Map<string, number>()
  const total = new Map<string, number>()
  let all = 0
  for (const [id, us] of selfUs) {
    all += us
    const n = byId.get(id)!
    self.set(key(n), (self.get(key(n)) ?? 0) + us)
    // inclusive: every distinct function on the stack once
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = key(byId.get(cur)!)
      if (seen.has(k)) continue
      seen.add(k)
      total.set(k, (total.get(k) ?? 0) + us)
    }
  }
  const frames = [...total.keys()].map((k) => ({
    name: k,
    selfMs: (self.get(k) ?? 0) / 1000,
    totalMs: total.get(k)! / 1000,
    selfPct: 100 * (self.get(k) ?? 0) / all,
    totalPct: 100 * total.get(k)! / all
  }))
  return { totalMs: all / 1000, frames }
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const args = process.argv.slice(2)
  const file = args.find((a) => !a.startsWith('--'))
  if (!file) { process.stderr.write('usage: profile-top.ts FILE.cpuprofile [--top N] [--filter TEXT]\n'); process.exit(2) }
  const topN = Number(args[args.indexOf('--top') + 1]) || 25
  const filter = args.includes('--filter') ? args[args.indexOf('--filter') + 1]! : ''
  const opt = (name: string): number | undefined => args.includes(name) ? Number(args[args.indexOf(name) + 1]) : undefined
  const { totalMs, frames } = topFrames(JSON.parse(readFileSync(file, 'utf8')) as Profile, { fromS: opt('--from-s'), toS: opt('--to-s'), busy: args.includes('--busy') })
  const show = (title: string, list: Frame[], f: (x: Frame) => string): void => {
    process.stdout.write(`\n${title}\n`)
    for (const x of list.slice(0, topN)) process.stdout.write(`${f(x)}  ${x.name}\n`)
  }
  process.stdout.write(`${file}: ${totalMs.toFixed(0)} ms sampled\n`)
  show('self time', frames.filter((x) => x.name.includes(filter)).sort((a, b) => b.selfMs - a.selfMs), (x) => `${x.selfPct.toFixed(1).padStart(5)}%`)
  show('inclusive time', frames.filter((x) => x.name.includes(filter)).sort((a, b) => b.totalMs - a.totalMs), (x) => `${x.totalPct.toFixed(1).padStart(5)}%`)
}
