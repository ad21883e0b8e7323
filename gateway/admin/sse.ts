/**
 * Server-sent events for the admin page: `GET /events` answers `event: history` (the last
 * 5 minutes of samples) and then one `data:` line per sample, each serialised once for all
 * viewers. Bounded: at most MAX_CLIENTS streams; a viewer that does not read (more than
 * MAX_BUFFERED bytes waiting in its socket beyond the history it was sent) is disconnected rather than buffered for.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { LiveSampler, Sample } from './live.ts'

const MAX_CLIENTS = 32
const MAX_BUFFERED = 256 * 1024

export class SseHub {
  /** each stream and how many bytes may wait in its socket (its history frame + MAX_BUFFERED) */
  private readonly clients = new Map<ServerResponse, number>()
  private readonly unsubscribe: () => void

  constructor (private readonly sampler: LiveSampler) {
    this.unsubscribe = sampler.onSample((s) => this.broadcast(s))
  }

  get size (): number { return this.clients.size }

  open (req: IncomingMessage, res: ServerResponse): void {
    if (this.clients.size >= MAX_CLIENTS) {
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '5' })
      res.end(JSON.stringify({ error: 'busy', message: `at most ${MAX_CLIENTS} live views at once` }))
      return
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' })
    const history = `retry: 2000\nevent: history\ndata: ${JSON.stringify(this.sampler.recent())}\n\n`
    res.write(history)
    this.clients.set(res, Buffer.byteLength(history) + MAX_BUFFERED)
    const drop = (): void => { this.clients.delete(res) }
    req.on('close', drop)
    res.on('error', drop)
  }

  private broadcast (s: Sample): void {
    if (this.clients.size === 0) return
    const frame = `data: ${JSON.stringify(s)}\n\n`
    for (const [res, limit] of this.clients) {
      if (res.writableLength > limit) { this.clients.delete(res); res.destroy(); continue }
      res.write(frame)
    }
  }

  close (): void {
    this.unsubscribe()
    for (const res of this.clients.keys()) res.destroy()
    this.clients.clear()
  }
}
