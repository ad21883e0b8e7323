// Prints bytes allocated per reading and the top allocation sites (with their callers) of
// a profile written by bench/lib/alloc-sampler.mjs: node bench/lib/alloc-top.mjs FILE [N]
import { readFileSync } from 'node:fs'

const profile = JSON.parse(readFileSync(process.argv[2], 'utf8'))
const top = Number(process.argv[3] ?? 30)
const bySample = new Map()
for (const s of profile.samples) bySample.set(s.nodeId, (bySample.get(s.nodeId) ?? 0) + s.size)
const sites = new Map()
let total = 0
const short = (f) => `${f.functionName || '(anonymous)'} ${f.url.replace(/.*node_modules\//, '~/').replace(/^file:\/\/\/[^ ]*?\/(gateway|protocol|ingest)\//, '$1/')}:${f.lineNumber + 1}`
function walk (node, callers) {
  const name = short(node.callFrame)
  const size = bySample.get(node.id) ?? 0
  total += size
  if (size) {
    const key = `${name}  <=  ${callers.slice(-3).reverse().join(' < ')}`
    sites.set(key, (sites.get(key) ?? 0) + size)
  }
  for (const c of node.children) walk(c, [...callers, name.replace(/ .*\//, ' ')])
}
walk(profile.head, [])
const per = profile.readings > 0 ? `, ${profile.readings} readings stored: ${Math.round(total / profile.readings)} B per reading` : ''
console.log(`${(total / 1e6).toFixed(1)} MB allocated in the window${per}`)
for (const [k, v] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`)
