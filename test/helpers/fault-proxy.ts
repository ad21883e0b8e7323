/**
 * A TCP fault proxy for fault tests (issue 5): `net.createServer` on 127.0.0.1:0 that
 * forwards every accepted connection to `127.0.0.1:{target}` and injects network faults at
 * run time, without root (no iptables, no tc):
 *
 * - `blackhole()`: connections stay open, nothing is forwarded in either direction and
 *   nothing is answered (new connections are accepted and left hanging). Bytes that fall
 *   into the hole are gone, so `heal()` destroys the connections that lost bytes: their
 *   streams can never be whole again (as TCP would eventually time them out).
 * - `reset()`: destroys every connection with an RST; new ones are reset at once.
 * - `delay(ms, dir?)`: each chunk is forwarded `ms` after it arrived (order kept).
 * - `throttle(bytesPerSec, dir?)`: a token bucket, chunks are dribbled out in slices.
 * - `cutNext({ dir, bytes })`: the next chunk in `dir` is forwarded only up to `bytes`
 *   bytes, then that connection is destroyed: a frame cut in the middle.
 * - `heal()`: back to plain forwarding (clears blackhole, reset, delay, throttle).
 * - `retarget(port)`: new connections go to another port (a restarted process that picked
 *   a new `listen(0)` port keeps the same address for its peers).
 * - `detach()`: new connections are reset until the next `retarget`; open ones are left
 *   alone. Call it before killing the target: once the target is dead its port is free,
 *   and any process that binds it (another test's server, a Mosquitto) would get the
 *   connections forwarded there, and could acknowledge what the peers resend. Detached, the
 *   proxy only ever dials a port whose owner the test started and has not killed.
 *
 * Directions: `up` is client -> target, `down` is target -> client. Backpressure is kept:
 * a direction whose queue holds more than 1 MiB pauses its source.
 */
import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net'
import { EventEmitter } from 'node:events'
import { mulberry32 } from '../../common/index.ts'

export type Dir = 'up' | 'down'
export type Mode = 'pass' | 'blackhole' | 'reset'

type T = { after: (fn: () => unknown) => void }

const HIGH_WATER = 1024 * 1024

type Chunk = { buf: Buffer, at: number }

export type ProxyStats = {
  accepted: number
  active: number
  bytes: Record<Dir, number>
  blackholed: Record<Dir, number>
  resets: number
  cuts: number
}

type Cut = { dir: Dir, bytes: number, resolve: () => void }

class Pipe {
  private readonly queue: Chunk[] = []
  private queued = 0
  private running = false
  constructor (private readonly conn: Conn, readonly dir: Dir, private readonly src: Socket, private readonly dst: Socket) {}

  push (buf: Buffer): void {
    this.queue.push({ buf, at: performance.now() })
    this.queued += buf.length
    if (this.queued > HIGH_WATER) this.src.pause()
    if (!this.running) void this.run()
  }

  private async run (): Promise<void> {
    this.running = true
    const p = this.conn.proxy
    try {
      while (this.queue.length > 0 && !this.conn.closed) {
        if (p.mode === 'blackhole') {
          p.stats.blackholed[this.dir] += this.queued
          this.conn.lostBytes = true
          this.queue.length = 0
          this.queued = 0
          break
        }
        const head = this.queue[0]!
        const delay = p.delayMs[this.dir]
        const wait = head.at + delay - performance.now()
        if (wait > 0) { await sleep(wait); continue }
        const cut = p.takeCut(this.dir)
        if (cut) {
          if (cut.bytes > 0) this.dst.write(head.buf.subarray(0, cut.bytes))
          p.stats.cuts++
          p.stats.bytes[this.dir] += Math.min(cut.bytes, head.buf.length)
          // let the partial frame leave before the connection dies
          this.dst.end(() => this.conn.destroy())
          setTimeout(() => this.conn.destroy(), 50).unref()
          cut.resolve()
          return
        }
        let n = head.buf.length
        const rate = p.rateBps[this.dir]
        if (rate > 0) {
          const allowed = p.bucket(this.dir, n)
          if (allowed === 0) { await sleep(20); continue }
          n = allowed
        }
        const out = n === head.buf.length ? head.buf : head.buf.subarray(0, n)
        if (n === head.buf.length) this.queue.shift()
        else head.buf = head.buf.subarray(n)
        this.queued -= n
        p.stats.bytes[this.dir] += n
        p.emit('data', this.dir, out, this.conn)
        const ok = this.dst.write(out)
        if (this.queued <= HIGH_WATER / 2) this.src.resume()
        if (!ok && !this.conn.closed) await new Promise<void>((resolve) => { this.dst.once('drain', resolve); this.dst.once('close', resolve) })
      }
    } finally {
      this.running = false
      if (this.queued <= HIGH_WATER / 2 && !this.conn.closed) this.src.resume()
    }
  }
}

export class Conn {
  closed = false
  lostBytes = false
  readonly up: Pipe
  readonly down: Pipe
  constructor (readonly proxy: FaultProxy, readonly client: Socket, readonly server: Socket) {
    this.up = new Pipe(this, 'up', client, server)
    this.down = new Pipe(this, 'down', server, client)
    client.on('data', (b: Buffer) => this.up.push(b))
    server.on('data', (b: Buffer) => this.down.push(b))
    // a half-close is forwarded as a half-close (after what is queued would be simpler, but
    // nothing here needs that precision)
    client.on('end', () => { if (!this.closed) server.end() })
    server.on('end', () => { if (!this.closed) client.end() })
    for (const s of [client, server]) {
      s.on('error', () => this.destroy())
      s.on('close', () => this.destroy())
    }
  }

  destroy (rst = false): void {
    if (this.closed) return
    this.closed = true
    for (const s of [this.client, this.server]) {
      if (rst && typeof s.resetAndDestroy === 'function' && !s.destroyed && s.readyState !== 'opening') s.resetAndDestroy()
      else s.destroy()
    }
    this.proxy.dropConn(this)
  }
}

export class FaultProxy extends EventEmitter<{ data: [dir: Dir, chunk: Buffer, conn: Conn], connection: [] }> {
  mode: Mode = 'pass'
  readonly delayMs: Record<Dir, number> = { up: 0, down: 0 }
  readonly rateBps: Record<Dir, number> = { up: 0, down: 0 }
  readonly stats: ProxyStats = { accepted: 0, active: 0, bytes: { up: 0, down: 0 }, blackholed: { up: 0, down: 0 }, resets: 0, cuts: 0 }
  private readonly conns = new Set<Conn>()
  private readonly hanging = new Set<Socket>()
  private readonly tokens: Record<Dir, { n: number, at: number }> = { up: { n: 0, at: 0 }, down: { n: 0, at: 0 } }
  private cuts: Cut[] = []
  private closed = false

  private constructor (private readonly server: Server, public target: number | null) { super() }

  /** Starts a proxy on 127.0.0.1:0 to 127.0.0.1:`target`; closed after the test. */
  static async start (t: T, target: number): Promise<FaultProxy> {
    const server = createServer({ noDelay: true, pauseOnConnect: true })
    const proxy = new FaultProxy(server, target)
    server.on('connection', (s) => proxy.accept(s))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(() => proxy.close())
    return proxy
  }

  get port (): number { return (this.server.address() as AddressInfo).port }
  get url (): string { return `127.0.0.1:${this.port}` }
  get active (): number { return this.conns.size + this.hanging.size }

  private accept (client: Socket): void {
    this.stats.accepted++
    client.on('error', () => {})
    if (this.closed || this.mode === 'reset' || this.target === null) {
      this.stats.resets++
      client.resetAndDestroy()
      return
    }
    if (this.mode === 'blackhole') {
      // accepted, never answered; what it sends is read and dropped
      this.hanging.add(client)
      client.on('data', (b: Buffer) => { this.stats.blackholed.up += b.length })
      client.on('close', () => this.hanging.delete(client))
      client.resume()
      return
    }
    const server = connect({ port: this.target, host: '127.0.0.1', noDelay: true })
    server.on('error', () => {})
    const conn = new Conn(this, client, server)
    this.conns.add(conn)
    this.stats.active = this.conns.size
    server.once('connect', () => client.resume())
    this.emit('connection')
  }

  /** @internal */
  dropConn (c: Conn): void {
    this.conns.delete(c)
    this.stats.active = this.conns.size
  }

  /** @internal the next armed cut for `dir`, if any */
  takeCut (dir: Dir): Cut | undefined {
    const i = this.cuts.findIndex((c) => c.dir === dir)
    if (i < 0) return undefined
    return this.cuts.splice(i, 1)[0]
  }

  /** @internal token bucket: how many of `want` bytes may go now */
  bucket (dir: Dir, want: number): number {
    const rate = this.rateBps[dir]
    const b = this.tokens[dir]
    const now = performance.now()
    // at most 100 ms of burst
    b.n = Math.min(rate / 10, b.n + (now - b.at) * rate / 1000)
    b.at = now
    const n = Math.min(want, Math.floor(b.n))
    b.n -= n
    return n
  }

  blackhole (): void { this.mode = 'blackhole' }

  /** Destroys every connection (RST) and resets new ones until `heal()`. */
  reset (): void {
    this.mode = 'reset'
    for (const c of [...this.conns]) { this.stats.resets++; c.destroy(true) }
    for (const s of [...this.hanging]) { this.stats.resets++; s.resetAndDestroy() }
  }

  delay (ms: number, dir?: Dir): void {
    if (dir !== 'down') this.delayMs.up = ms
    if (dir !== 'up') this.delayMs.down = ms
  }

  throttle (bytesPerSec: number, dir?: Dir): void {
    for (const d of ['up', 'down'] as const) {
      if (dir && dir !== d) continue
      this.rateBps[d] = bytesPerSec
      this.tokens[d] = { n: 0, at: performance.now() }
    }
  }

  /** The next chunk in `dir` is forwarded up to `bytes` bytes, then its connection dies. Resolves when that happened. */
  cutNext (opts: { dir: Dir, bytes: number }): Promise<void> {
    return new Promise((resolve) => this.cuts.push({ ...opts, resolve }))
  }

  /** Disarms cuts that have not fired. */
  cancelCuts (): void { this.cuts = [] }

  /** Plain forwarding again; connections that lost bytes in a blackhole are destroyed. */
  heal (): void {
    this.mode = 'pass'
    this.delayMs.up = this.delayMs.down = 0
    this.rateBps.up = this.rateBps.down = 0
    for (const c of [...this.conns]) if (c.lostBytes) c.destroy()
    for (const s of [...this.hanging]) s.destroy()
  }

  /** New connections go to `port` (existing ones are left alone; see `dropAll`). */
  retarget (port: number): void { this.target = port }

  /** New connections are reset until `retarget` (existing ones are left alone): before the target is killed. */
  detach (): void { this.target = null }

  /** Destroys every current connection (FIN/close, not RST); new ones are accepted. */
  dropAll (): void {
    for (const c of [...this.conns]) c.destroy()
    for (const s of [...this.hanging]) s.destroy()
  }

  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.cuts = []
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve())
      for (const c of [...this.conns]) c.destroy()
      for (const s of [...this.hanging]) s.destroy()
    })
  }
}

function sleep (ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(1, ms)))
}

// ---- small tools shared by the fault tests -----------------------------------------

/** A seeded PRNG: fault schedules are reproducible from the seed. */
export const seeded = mulberry32

export type Squatter = { port: number, accepted: () => number, close: () => Promise<void> }

/**
 * A stranger on a port a killed process released: listens on 127.0.0.1:`port` until the
 * test ends and counts the connections it is offered (and closes them). A test that
 * restarts processes puts one on each freed port and checks that nobody dialed it.
 */
export async function squat (t: T, port: number): Promise<Squatter> {
  let accepted = 0
  const server = createServer((s) => { accepted++; s.on('error', () => {}); s.destroy() })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, '127.0.0.1', resolve) })
  let closing: Promise<void> | null = null
  const close = (): Promise<void> => (closing ??= new Promise<void>((resolve) => server.close(() => resolve())))
  t.after(close)
  return { port, accepted: () => accepted, close }
}

/** Resident set size of a process in MiB (Linux /proc), or null when it is gone. */
export async function rssMb (pid: number): Promise<number | null> {
  const { readFile } = await import('node:fs/promises')
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : null
  } catch { return null }
}

export type RssSampler = { peak: () => number, last: () => number, samples: () => number[], stop: () => void }

/** Samples a process's RSS every `everyMs` until stopped (or the test ends). */
export function sampleRss (t: T, pid: number, everyMs = 100): RssSampler {
  const samples: number[] = []
  let busy = false
  const timer = setInterval(() => {
    if (busy) return
    busy = true
    void rssMb(pid).then((v) => { if (v !== null) samples.push(v) }).finally(() => { busy = false })
  }, everyMs)
  const stop = (): void => clearInterval(timer)
  t.after(stop)
  return { peak: () => Math.max(0, ...samples), last: () => samples.at(-1) ?? 0, samples: () => samples, stop }
}

/** The value of one Prometheus sample (`name` or `name{labels}`) in exposition text, or null. */
export function promValue (text: string, name: string): number | null {
  for (const line of text.split('\n')) {
    if (line.startsWith(name + ' ') || line.startsWith(name + '{')) {
      if (line.startsWith(name + '{') && !name.includes('{')) continue
      const v = Number(line.slice(line.lastIndexOf(' ') + 1))
      if (Number.isFinite(v)) return v
    }
  }
  return null
}
