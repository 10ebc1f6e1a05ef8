import type { FastifyInstance } from 'fastify'
import { startSideListener, type SideListener } from '../../http/side-listener.ts'
import { markAdminRequest } from './plugin.ts'

export type AdminListener = SideListener

/**
 * ADMIN_PORT: the admin API on a port of its own (bind it to an internal network). The same
 * app answers, through its router (hooks, validation, the one error format), but only its
 * admin routes; the main port then answers them 404 (admin/plugin.ts).
 */
export async function startAdminListener (options: { app: FastifyInstance, host: string, port: number }): Promise<AdminListener> {
  const { app } = options
  return await startSideListener({
    host: options.host,
    port: options.port,
    requestTimeoutMs: 30_000,
    handle (request, response) {
      markAdminRequest(request)
      app.routing(request, response)
    }
  })
}
