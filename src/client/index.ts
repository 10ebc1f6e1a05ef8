import createClient, { type Client, type ClientOptions } from 'openapi-fetch'
import type { components, operations, paths } from './openapi.ts'

export type { components, operations, paths }

/**
 * The typed client internal services use: openapi-fetch over the types
 * generated from this gateway's own /openapi.json (src/client/openapi.ts), so
 * paths, bodies, parameters and answers are checked at compile time.
 */
export type GatewayClient = Client<paths>

export interface GatewayClientOptions {
  /** The gateway's origin, e.g. http://127.0.0.1:8080 */
  baseUrl: string
  /** A tenant key (vgk_...) or a browser token: sent as `Authorization: Bearer <key>` */
  key: string
  /** Another fetch (tests, proxies); default globalThis.fetch */
  fetch?: ClientOptions['fetch']
}

export function createGatewayClient (options: GatewayClientOptions): GatewayClient {
  return createClient<paths>({
    baseUrl: options.baseUrl,
    headers: { authorization: `Bearer ${options.key}` },
    ...(options.fetch === undefined ? {} : { fetch: options.fetch })
  })
}
