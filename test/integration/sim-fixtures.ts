/**
 * An in-test MQTT broker that behaves like the gateway's intake as far as a device can
 * tell: it "stores" a reading (dedup by boot+seq, partition seq `s` in arrival order) in
 * authorizePublish, after an optional delay, and only then lets Aedes send the PUBACK;
 * optionally it publishes receipts. Its store doubles as the "ingest" for the audit.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { Aedes } from 'aedes'
import { decodeReading, encodeReceipt, parseDeviceTopic, receiptsTopic } from '../../protocol/index.ts'
import type { StoredRow } from '../../device-sim/audit.ts'

export type TestBroker = {
  url: string
  port: number
  broker: Aedes
  rows: (deviceId: string) => StoredRow[]
  duplicates: () => number
  stored: () => number
  /** Drops a device's TCP connection from the broker side. */
  kick: (deviceId: string) => boolean
  close: () => Promise<void>
}

export async function startTestBroker (t: { after: (fn: () => unknown) => void }, opts: { delayMs?: number, receipts?: boolean, dropIfDisconnected?: boolean } = {}): Promise<TestBroker> {
  const store = new Map<string, StoredRow[]>()
  const seen = new Set<string>()
  let s = 0
  let dups = 0
  let count = 0
  const sockets = new Map<string, Socket>()
  const broker = await Aedes.createBroker({
    authorizePublish: (client, packet, cb) => {
      const dt = parseDeviceTopic(packet.topic)
      if (!client || !dt || dt.kind !== 'readings' || dt.deviceId !== client.id) return cb(new Error('not allowed'))
      const store1 = (): void => {
        // a publish whose connection died before the (delayed) commit is not stored
        if (opts.dropIfDisconnected && client.closed) return cb(new Error('connection closed'))
        const r = decodeReading(packet.payload as Buffer, 16_384)
        const key = `${dt.deviceId}/${String(r.boot)}/${r.seq}`
        if (seen.has(key)) { dups++; return cb(null) }
        seen.add(key)
        count++
        const list = store.get(dt.deviceId) ?? []
        list.push({ seq: r.seq, boot: r.boot, gateway: 'test', epoch: 'e1', p: 0, s: ++s })
        store.set(dt.deviceId, list)
        cb(null)
        if (opts.receipts) {
          broker.publish({ cmd: 'publish', topic: receiptsTopic(dt.deviceId), payload: encodeReceipt({ boot: r.boot, upTo: r.seq, rejected: [] }), qos: 0, retain: false, dup: false }, () => {})
        }
      }
      if (opts.delayMs) setTimeout(store1, opts.delayMs)
      else store1()
    }
  })
  broker.on('client', (c) => { const sock = (c as unknown as { conn: Socket }).conn; sockets.set(c.id, sock) })
  const server: Server = createServer(broker.handle)
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res))
  const port = (server.address() as { port: number }).port
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    for (const sock of sockets.values()) sock.destroy()
    await new Promise<void>((res) => broker.close(() => res()))
    await new Promise<void>((res) => server.close(() => res()))
  }
  t.after(close)
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    broker,
    rows: (id) => (store.get(id) ?? []).slice().sort((a, b) => String(a.boot).localeCompare(String(b.boot)) || a.seq! - b.seq!),
    duplicates: () => dups,
    stored: () => count,
    kick: (id) => { const sock = sockets.get(id); if (!sock) return false; sock.destroy(); return true },
    close
  }
}
