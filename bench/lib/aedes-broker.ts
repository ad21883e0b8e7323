/**
 * Bare Aedes 1.x: `createBroker()` with its default in-memory persistence and no hooks,
 * behind a plain net server. The reference for what the broker costs without the
 * gateway's durable intake. Sockets get TCP_NODELAY, as Mosquitto's `set_tcp_nodelay`.
 *
 * Run: node --import tsx bench/lib/aedes-broker.ts [--nagle] -> {"msg":"ready","mqttPort":N}
 */
import net from 'node:net'
import { Aedes } from 'aedes'

const noDelay = !process.argv.includes('--nagle')
const broker = await Aedes.createBroker()
broker.on('clientError', () => { /* a generator hang-up at the end of a run */ })
const server = net.createServer({ noDelay }, broker.handle)
server.listen(0, '127.0.0.1', () => {
  const addr = server.address() as net.AddressInfo
  process.stdout.write(JSON.stringify({ msg: 'ready', mqttPort: addr.port, pid: process.pid, noDelay }) + '\n')
})

let stopping = false
const stop = (): void => {
  if (stopping) process.exit(0)
  stopping = true
  server.close()
  broker.close(() => process.exit(0))
  setTimeout(() => process.exit(0), 2000).unref()
}
process.once('SIGTERM', stop)
process.once('SIGINT', stop)
