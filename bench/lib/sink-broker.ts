/**
 * The instant-ack sink: accepts MQTT connections and answers CONNECT with CONNACK, PUBLISH
 * QoS 1 with PUBACK, PINGREQ with PINGRESP, and does nothing else. It costs next to
 * nothing per message, so the load generator's rate against it is the generator's own
 * ceiling: a broker that reaches it was limited by the generator, not by itself.
 *
 * Run: node --import tsx bench/lib/sink-broker.ts  -> logs {"msg":"ready","mqttPort":N}
 */
import net from 'node:net'
import { connackPacket, FrameSplitter, PacketType, PINGRESP } from './mqtt-wire.ts'

const server = net.createServer({ noDelay: true }, (sock) => {
  const splitter = new FrameSplitter()
  sock.on('error', () => { /* the generator hung up */ })
  sock.on('data', (chunk: Buffer) => {
    const out: Buffer[] = []
    let acks: Buffer | null = null
    let nAcks = 0
    try {
      splitter.push(chunk, (type, flags, body) => {
        if (type === PacketType.Publish && (flags & 0x06) === 0x02) {
          const topicLen = (body[0]! << 8) | body[1]!
          if (acks === null) acks = Buffer.allocUnsafe(4 * 1024)
          if (nAcks * 4 + 4 > acks.length) { out.push(acks.subarray(0, nAcks * 4)); acks = Buffer.allocUnsafe(4 * 1024); nAcks = 0 }
          const p = nAcks++ * 4
          acks[p] = PacketType.Puback << 4
          acks[p + 1] = 2
          acks[p + 2] = body[2 + topicLen]!
          acks[p + 3] = body[3 + topicLen]!
        } else if (type === PacketType.Connect) out.push(connackPacket(0))
        else if (type === PacketType.Pingreq) out.push(PINGRESP)
        else if (type === PacketType.Disconnect) sock.end()
      })
    } catch {
      sock.destroy()
      return
    }
    if (acks !== null && nAcks > 0) out.push((acks as Buffer).subarray(0, nAcks * 4))
    if (out.length === 1) sock.write(out[0]!)
    else if (out.length > 1) sock.write(Buffer.concat(out))
  })
})

server.listen(0, '127.0.0.1', () => {
  const addr = server.address() as net.AddressInfo
  process.stdout.write(JSON.stringify({ msg: 'ready', mqttPort: addr.port, pid: process.pid }) + '\n')
})

const stop = (): void => { server.close(); process.exit(0) }
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
