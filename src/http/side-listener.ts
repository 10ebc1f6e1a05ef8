import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { httpUrl } from './url.ts'

export interface SideListener {
  /** e.g. http://127.0.0.1:9464 */
  url: string
  close (): Promise<void>
}

/**
 * A small HTTP listener beside the main one (METRICS_PORT, ADMIN_PORT), for an internal
 * network. Nothing long-lived is served on one: idle connections need not hold a shutdown,
 * so close() ends them all at once.
 */
export async function startSideListener (options: {
  host: string
  port: number
  requestTimeoutMs: number
  handle: (request: IncomingMessage, response: ServerResponse) => void
}): Promise<SideListener> {
  const server: Server = createServer(options.handle)
  server.keepAliveTimeout = 5000
  server.headersTimeout = 10_000
  server.requestTimeout = options.requestTimeoutMs
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const { address, port } = server.address() as AddressInfo
  return {
    url: httpUrl(address, port),
    async close () {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}
