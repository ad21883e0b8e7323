/**
 * The TCP fault proxy of test/helpers/fault-proxy.ts (issue 5), against an echo server:
 * plain forwarding, blackhole, reset, delay, throttle, a cut mid-frame, heal, retarget, detach.
 * Loopback sockets only (the proxy is a test tool; it has no logic worth a socket-free test).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createServer, connect, type Socket, type AddressInfo } from 'node:net'
import { FaultProxy, squat, type Squatter } from '../helpers/fault-proxy.ts'
import { waitFor } from '../helpers/index.ts'

type T = { after: (fn: () => unknown) => void }

async function echoServer (t: T): Promise<{ port: number, received: () => number }> {
  let received = 0
  const sockets = new Set<Socket>()
  const server = createServer((s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {})
    s.on('data', (b) => { received += b.length; s.write(b) })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()) }))
  return { port: (server.address() as AddressInfo).port, received: () => received }
}

type Client = { sock: Socket, got: () => Buffer, closed: () => boolean, error: () => string | null }

async function client (t: T, port: number): Promise<Client> {
  const sock = connect({ port, host: '127.0.0.1' })
  const chunks: Buffer[] = []
  let closed = false
  let error: string | null = null
  sock.on('data', (b: Buffer) => chunks.push(b))
  sock.on('close', () => { closed = true })
  sock.on('error', (e: NodeJS.ErrnoException) => { error = e.code ?? e.message })
  t.after(() => sock.destroy())
  await new Promise<void>((resolve) => { sock.once('connect', () => resolve()); sock.once('close', () => resolve()) })
  return { sock, got: () => Buffer.concat(chunks), closed: () => closed, error: () => error }
}

test('fault proxy: forwards both ways, then blackhole, heal, reset, retarget', async (t) => {
  const echo = await echoServer(t)
  const proxy = await FaultProxy.start(t, echo.port)
  const a = await client(t, proxy.port)
  a.sock.write('hello')
  await waitFor(() => a.got().toString() === 'hello', { timeoutMs: 3000, what: 'echo through the proxy' })

  // blackhole: the old connection hears nothing, a new one is accepted and never answered
  proxy.blackhole()
  a.sock.write('lost')
  const b = await client(t, proxy.port)
  b.sock.write('also lost')
  await waitFor(() => proxy.stats.blackholed.up >= 13, { timeoutMs: 3000, what: 'bytes fell into the hole' })
  // counted as blackholed means dropped by the proxy: they can no longer reach the target,
  // and the proxy's count of forwarded bytes says none of them left before
  assert.equal(proxy.stats.bytes.up, 5, 'nothing forwarded during the blackhole')
  assert.equal(echo.received(), 5, 'nothing reached the target during the blackhole')
  assert.equal(a.got().toString(), 'hello')
  assert.equal(b.got().length, 0)
  assert.equal(b.closed(), false, 'a blackholed connection is left hanging, not closed')

  // heal: connections that lost bytes are closed, new ones work
  proxy.heal()
  await waitFor(() => a.closed() && b.closed(), { timeoutMs: 3000, what: 'damaged connections closed' })
  const c = await client(t, proxy.port)
  c.sock.write('again')
  await waitFor(() => c.got().toString() === 'again', { timeoutMs: 3000 })

  // reset: current connections die, new ones are refused with an RST
  proxy.reset()
  await waitFor(() => c.closed(), { timeoutMs: 3000, what: 'connection reset' })
  const d = await client(t, proxy.port)
  await waitFor(() => d.closed(), { timeoutMs: 3000, what: 'new connection reset' })
  assert.equal(d.error(), 'ECONNRESET')

  // retarget to another server after heal
  const echo2 = await echoServer(t)
  proxy.heal()
  proxy.retarget(echo2.port)
  const e = await client(t, proxy.port)
  e.sock.write('moved')
  await waitFor(() => e.got().toString() === 'moved', { timeoutMs: 3000 })
  assert.equal(echo2.received(), 5)
})

test('fault proxy: delay, throttle and a cut in the middle of a frame', async (t) => {
  const echo = await echoServer(t)
  const proxy = await FaultProxy.start(t, echo.port)
  const a = await client(t, proxy.port)

  proxy.delay(300, 'up')
  const t0 = performance.now()
  a.sock.write('slow')
  await waitFor(() => a.got().length === 4, { timeoutMs: 3000 })
  const took = performance.now() - t0
  assert.ok(took >= 280, `delayed ${took} ms`)
  proxy.heal()

  // 20 KiB at 40 KiB/s each way takes about 0.5 s on the way up (the echo comes back in parallel)
  proxy.throttle(40 * 1024)
  const t1 = performance.now()
  a.sock.write(Buffer.alloc(20 * 1024, 7))
  await waitFor(() => a.got().length === 4 + 20 * 1024, { timeoutMs: 5000, what: 'throttled echo' })
  const took2 = performance.now() - t1
  assert.ok(took2 >= 350 && took2 < 4000, `throttled transfer took ${took2} ms`)
  proxy.heal()

  // the next downstream chunk is cut after 3 bytes and the connection dies
  const cut = proxy.cutNext({ dir: 'down', bytes: 3 })
  a.sock.write('abcdefgh')
  await cut
  await waitFor(() => a.closed(), { timeoutMs: 3000, what: 'cut connection closed' })
  assert.equal(a.got().subarray(4 + 20 * 1024).toString(), 'abc')
  assert.equal(echo.received(), 4 + 20 * 1024 + 8, 'the upstream side got the whole frame')
  assert.equal(proxy.stats.cuts, 1)
})

test('fault proxy: detached before its target dies, it never dials the freed port a stranger took', async (t) => {
  // the stranger binds the dead target's port: the way a restart on an old port lost readings
  const dieAndSquat = async (detach: boolean): Promise<{ stranger: Squatter, refused: boolean }> => {
    const target = createServer((s) => s.destroy())
    await new Promise<void>((r) => target.listen(0, '127.0.0.1', r))
    const port = (target.address() as AddressInfo).port
    const proxy = await FaultProxy.start(t, port)
    if (detach) proxy.detach()
    await new Promise<void>((r) => target.close(() => r()))
    const stranger = await squat(t, port)
    const c = await client(t, proxy.port)
    await waitFor(() => c.closed() || stranger.accepted() > 0, { timeoutMs: 3000, what: 'the connection was refused or reached the stranger' })
    return { stranger, refused: c.error() === 'ECONNRESET' }
  }
  // without detach the stranger gets the peer's connection (the check can fail)
  const before = await dieAndSquat(false)
  assert.equal(before.stranger.accepted(), 1, 'a retargeted-only proxy forwards to whoever holds the old port')
  const after = await dieAndSquat(true)
  assert.equal(after.refused, true, 'a detached proxy resets new connections')
  assert.equal(after.stranger.accepted(), 0, 'and never dials the freed port')
})
