/**
 * Binding a listener at startup, with a failure that says which flag and port are at
 * fault ("EADDRINUSE" alone, logged by a process that then kept running on
 * nothing, left a Pi that already ran Mosquitto on 1883 looking alive under systemd).
 */
import type { Server } from 'node:net'
import { EdgeError } from '../protocol/index.ts'

/** A listener could not bind; `flag` is the CLI flag that chose the port, `errnoCode` the OS's reason. */
export class ListenError extends EdgeError {
  static override readonly code = 'EDGE_ERR_LISTEN'
  override name = 'ListenError'
  readonly flag: string
  readonly host: string
  readonly port: number
  readonly errnoCode: string | undefined
  constructor (flag: string, host: string, port: number, cause: NodeJS.ErrnoException, hint = '') {
    super(`${flag} ${port}: ${explain(cause, host, port, hint)}`, { cause, retryable: cause.code === 'EADDRINUSE' })
    this.flag = flag
    this.host = host
    this.port = port
    this.errnoCode = cause.code
  }
}

function explain (err: NodeJS.ErrnoException, host: string, port: number, hint: string): string {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`
  switch (err.code) {
    case 'EADDRINUSE': return `${where} is already in use by another process${hint ? ` (${hint})` : ''}; stop it or choose another port`
    case 'EACCES': return `permission denied binding ${where} (ports below 1024 need root or CAP_NET_BIND_SERVICE)`
    case 'EADDRNOTAVAIL': return `${host} is not an address of this machine`
    default: return `cannot listen on ${where}: ${err.message}`
  }
}

/** Listens and resolves once bound; rejects with a ListenError naming `flag` (`hint`: who might hold the port). */
export function listen (server: Server, port: number, host: string, flag: string, hint = ''): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => reject(new ListenError(flag, host, port, err, hint))
    server.once('error', onError)
    server.listen(port, host, () => { server.off('error', onError); resolve() })
  })
}
