import { randomUUID } from 'node:crypto'
import type { Registry } from 'prom-client'
import { gatewayError } from '../../errors/table.ts'
import { errorBody } from '../../errors/handler.ts'
import { startSideListener, type SideListener } from '../../http/side-listener.ts'

export type MetricsListener = SideListener

/**
 * METRICS_PORT: `/metrics` on a port of its own, for a scraper on an internal
 * network. No token: whoever can reach the port can read the metrics (tenant
 * ids and counts, never keys), so do not publish it.
 */
export async function startMetricsListener (options: { registry: Registry, host: string, port: number }): Promise<MetricsListener> {
  const { registry } = options
  return await startSideListener({
    host: options.host,
    port: options.port,
    requestTimeoutMs: 10_000,
    handle (request, response) {
      const path = (request.url ?? '').split('?')[0]
      if ((request.method === 'GET' || request.method === 'HEAD') && path === '/metrics') {
        registry.metrics().then((text) => {
          response.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' })
          response.end(request.method === 'HEAD' ? undefined : text)
        }, () => {
          const requestId = randomUUID()
          response.writeHead(500, { 'content-type': 'application/json; charset=utf-8', 'x-request-id': requestId })
          response.end(JSON.stringify(errorBody(gatewayError('internal_error'), requestId)))
        })
        return
      }
      const requestId = randomUUID()
      response.writeHead(404, { 'content-type': 'application/json; charset=utf-8', 'x-request-id': requestId })
      response.end(JSON.stringify(errorBody(gatewayError('not_found', { args: ['Only GET /metrics is served on this port.'] }), requestId)))
    }
  })
}
