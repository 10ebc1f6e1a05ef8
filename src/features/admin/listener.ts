import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { httpUrl } from '../../http/url.ts'
import { markAdminRequest } from './plugin.ts'

export interface AdminListener {
  /** e.g. http://127.0.0.1:8081 */
  url: string
  close (): Promise<void>
}

/**
 * ADMIN_PORT: the admin API on a port of its own (bind it to an internal network). The same
 * app answers, through its router (hooks, validation, the one error format), but only its
 * admin routes; the main port then answers them 404 (admin/plugin.ts).
 */
export async function startAdminListener (options: { app: FastifyInstance, host: string, port: number }): Promise<AdminListener> {
  const { app } = options
  const server: Server = createServer((request, response) => {
    markAdminRequest(request)
    app.routing(request, response)
  })
  server.keepAliveTimeout = 5000
  server.headersTimeout = 10_000
  server.requestTimeout = 30_000
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
