import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler } from 'fastify'
import { gatewayError } from '../../errors.ts'
import { tenantKeyHash, type Tenant, type TenantRegistry } from '../../lib/tenants.ts'

export interface TenantAuthOptions {
  registry: TenantRegistry
  /** per client IP, for requests without a valid key */
  unauthenticatedRateLimit: { max: number, timeWindowMs: number }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook: sets `request.tenant` from `Authorization: Bearer <key>` or answers 401 */
    authenticateTenant: onRequestAsyncHookHandler
    tenantRegistry: TenantRegistry
  }
  interface FastifyRequest {
    tenant: Tenant | null
  }
}

const bearerPattern = /^Bearer ([\x21-\x7e]{1,512})$/i

export function tenantOf (request: FastifyRequest): Tenant {
  if (request.tenant === null) throw new Error('route reached without authenticateTenant')
  return request.tenant
}

async function tenantAuthPlugin (fastify: FastifyInstance, options: TenantAuthOptions): Promise<void> {
  const { registry } = options
  const { max, timeWindowMs } = options.unauthenticatedRateLimit
  const limitUnauthenticated = fastify.createRateLimit({ max, timeWindow: timeWindowMs })
  const unauthorizedHeaders = { 'www-authenticate': 'Bearer realm="video-gateway"' }

  fastify.decorate('tenantRegistry', registry)
  fastify.decorateRequest('tenant', null)

  fastify.decorate('authenticateTenant', async function authenticateTenant (request: FastifyRequest) {
    const match = bearerPattern.exec(request.headers.authorization ?? '')
    // The lookup is by hash, so no secret is ever compared byte by byte here.
    const tenant = match === null ? undefined : registry.byKeyHash.get(tenantKeyHash(match[1] as string))
    if (tenant !== undefined) {
      request.tenant = tenant
      return
    }
    // No valid key: count it against the client IP, so keys cannot be guessed at speed.
    const limit = await limitUnauthenticated(request)
    if (limit.isAllowed === false && limit.isExceeded) {
      throw gatewayError('rate_limit_exceeded', {
        args: [`${limit.ttlInSeconds} seconds`],
        headers: {
          'retry-after': String(limit.ttlInSeconds),
          'ratelimit-policy': `"ip";q=${max};w=${Math.ceil(timeWindowMs / 1000)}`,
          ratelimit: `"ip";r=0;t=${limit.ttlInSeconds}`
        }
      })
    }
    throw gatewayError('unauthorized', { headers: unauthorizedHeaders })
  })
}

export default fp(tenantAuthPlugin, { name: 'tenant-auth', fastify: '5.x', dependencies: ['rate-limit'] })
