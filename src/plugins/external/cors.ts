import fp from 'fastify-plugin'
import cors, { type FastifyCorsOptions } from '@fastify/cors'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { TenantRegistry } from '../../features/tenants/registry.ts'

const exposedHeaders = [
  'x-request-id', 'retry-after', 'ratelimit', 'ratelimit-policy',
  'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'idempotent-replayed', 'etag'
]

/**
 * CORS only for the origins a tenant lists in `allowedOrigins`. Runs at
 * preHandler, after tenant auth, so a request gets CORS headers only for its
 * own tenant's origins. A preflight carries no key, so it is answered for any
 * origin some tenant allows (it grants nothing by itself: the real request
 * still needs a key and that tenant's origin).
 */
function allOrigins (registry: TenantRegistry): ReadonlySet<string> {
  return new Set(registry.tenants.flatMap((tenant) => [...(tenant.allowedOrigins ?? [])]))
}

async function corsPlugin (fastify: FastifyInstance): Promise<void> {
  const { tenantRegistry } = fastify
  // Every origin some tenant allows, worked out again only when a reload swapped the registry.
  let originsOf = tenantRegistry.current
  let origins = allOrigins(originsOf)
  function anyTenantOrigins (): ReadonlySet<string> {
    if (originsOf !== tenantRegistry.current) {
      originsOf = tenantRegistry.current
      origins = allOrigins(originsOf)
    }
    return origins
  }
  const denied: FastifyCorsOptions = { origin: false }

  await fastify.register(cors, {
    hook: 'preHandler',
    delegator (request: FastifyRequest, callback: (error: Error | null, options: FastifyCorsOptions) => void) {
      const origin = request.headers.origin
      if (origin === undefined) return callback(null, denied)
      const allowed = request.method === 'OPTIONS'
        ? anyTenantOrigins().has(origin)
        : request.tenant?.allowedOrigins?.has(origin) === true
      if (!allowed) return callback(null, denied)
      callback(null, {
        origin,
        methods: ['GET', 'POST'],
        allowedHeaders: ['authorization', 'content-type', 'idempotency-key', 'x-request-id'],
        exposedHeaders,
        maxAge: 600,
        // A preflight without Access-Control-Request-Method is not worth a
        // text/plain 400 outside the error format: it gets a 204 that grants nothing more.
        strictPreflight: false
      })
    }
  })

  // An error answered before preHandler (a missing or expired token is refused at onRequest)
  // must still reach the page: without these headers it would only see an opaque "CORS error".
  // Unauthenticated, any origin some tenant allows may read it: an error grants nothing.
  const exposed = exposedHeaders.join(', ')
  fastify.addHook('onSend', (request, reply, payload, done) => {
    const origin = request.headers.origin
    if (origin !== undefined && reply.statusCode >= 400 && !reply.hasHeader('access-control-allow-origin')) {
      const allowed = request.tenant === null ? anyTenantOrigins().has(origin) : request.tenant.allowedOrigins?.has(origin) === true
      if (allowed) {
        reply.headers({ 'access-control-allow-origin': origin, 'access-control-expose-headers': exposed })
        if (!reply.hasHeader('vary')) reply.header('vary', 'Origin')
      }
    }
    done(null, payload)
  })
}

export default fp(corsPlugin, { name: 'cors', fastify: '5.x', dependencies: ['tenant-auth', 'tenant-registry'] })
