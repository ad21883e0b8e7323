/**
 * How long one durable write takes on this disk: an fdatasync loop (1,000 B appended per
 * call) and a LevelDB sync-write loop (one small chained batch per call), 8 s each. The
 * gateway's `--durability power` PUBACK latency cannot beat the tail of these.
 *
 *   node --import tsx bench/fsync-latency.ts [--seconds 8]
 */
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Level } from 'level'
import { helpText, num, parseFlags, type FlagSpec } from './lib/args.ts'

const FLAGS: FlagSpec = {
  seconds: { type: 'number', default: 8, doc: 'duration of each loop' }
}
const f = parseFlags(process.argv.slice(2), FLAGS)
if (f.get('help')) {
  process.stdout.write(`usage: node --import tsx bench/fsync-latency.ts [flags]\n${helpText(FLAGS)}\n`)
  process.exit(0)
}
const seconds = num(f, 'seconds')
const dir = mkdtempSync(join(tmpdir(), 'bench-fsync-'))

function summary (name: string, lat: number[]): string {
  lat.sort((a, b) => a - b)
  const q = (p: number): string => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!.toFixed(2)
  return `${name}: n=${lat.length} p50=${q(0.5)} p99=${q(0.99)} p999=${q(0.999)} max=${lat[lat.length - 1]!.toFixed(1)} ms`
}

try {
  const fd = openSync(join(dir, 'append.log'), 'a')
  const buf = Buffer.alloc(1000, 1)
  const raw: number[] = []
  let end = Date.now() + seconds * 1000
  while (Date.now() < end) {
    const t = performance.now()
    writeSync(fd, buf)
    fdatasyncSync(fd)
    raw.push(performance.now() - t)
  }
  closeSync(fd)
  console.log(summary('write + fdatasync', raw))

  const db = new Level<string, Buffer>(join(dir, 'leveldb'), { valueEncoding: 'buffer' })
  await db.open()
  const lvl: number[] = []
  let k = 0
  end = Date.now() + seconds * 1000
  while (Date.now() < end) {
    const t = performance.now()
    await db.batch().put('k' + String(k++).padStart(12, '0'), buf).put('c', buf.subarray(0, 20)).write({ sync: true })
    lvl.push(performance.now() - t)
  }
  await db.close()
  console.log(summary('LevelDB batch write, sync: true', lvl))
} finally {
  rmSync(dir, { recursive: true, force: true })
}
