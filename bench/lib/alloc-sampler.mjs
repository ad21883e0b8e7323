// Preload for the gateway (node --import THIS): bytes allocated per reading, garbage
// included. From 5 s after start it runs V8's sampling heap profiler for 6 s, keeping the
// samples of objects the GC has since collected, and reads the gateway's stored-readings
// counter from its /metrics before and after. Writes ALLOC_PROFILE_DIR (default: the temp
// dir)/alloc-PID.json; bench/lib/alloc-top.mjs FILE prints bytes per reading and the top
// allocation sites. Use: npm run bench:intake -- --systems gateway-power-js --only 100x32
// --no-sink --no-write --gateway-node-args "--import ./bench/lib/alloc-sampler.mjs"
import { writeFileSync } from 'node:fs'
import { Session } from 'node:inspector'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const session = new Session()
session.connect()
const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (e, r) => e ? reject(e) : resolve(r)))
let adminPort = 0
const write = process.stdout.write.bind(process.stdout)
process.stdout.write = (chunk, ...rest) => {
  const m = /"adminPort":(\d+)/.exec(String(chunk))
  if (m) adminPort = Number(m[1])
  return write(chunk, ...rest)
}
async function stored () {
  const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text()
  const m = /gateway_intake_readings_total\{outcome="stored"\} (\d+)/.exec(text)
  // no line yet: nothing stored so far (the counter's cells appear with the first reading)
  return m ? Number(m[1]) : 0
}
setTimeout(async () => {
  await post('HeapProfiler.enable')
  const before = await stored()
  await post('HeapProfiler.startSampling', { samplingInterval: 16384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true })
  setTimeout(async () => {
    const { profile } = await post('HeapProfiler.stopSampling')
    const readings = (await stored()) - before
    const file = join(process.env.ALLOC_PROFILE_DIR ?? tmpdir(), `alloc-${process.pid}.json`)
    writeFileSync(file, JSON.stringify({ ...profile, readings }))
    process.stderr.write(`alloc-sampler: ${file}\n`)
  }, 6000).unref()
}, 5000).unref()
