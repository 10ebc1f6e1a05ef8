import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Registry } from 'prom-client'
import { gatewayError } from '../../errors/table.ts'
import { errorBody } from '../../errors/handler.ts'
import { httpUrl } from '../../http/url.ts'

export interface MetricsListener {
  /** e.g. http://127.0.0.1:9464 */
  url: string
  close (): Promise<void>
}

/**
 * METRICS_PORT: `/metrics` on a port of its own, for a scraper on an internal
 * network. No token: whoever can reach the port can read the metrics (tenant
 * ids and counts, never keys), so do not publish it.
 */
export async function startMetricsListener (options: { registry: Registry, host: string, port: number }): Promise<MetricsListener> {
  const { registry } = options
  const server: Server = createServer((request, response) => {
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
  })
  // Nothing long-lived is served here: idle scrapers' connections need not hold a shutdown.
  server.keepAliveTimeout = 5000
  server.headersTimeout = 10_000
  server.requestTimeout = 10_000
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
