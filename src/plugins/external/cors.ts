import fp from 'fastify-plugin'
import cors, { type FastifyCorsOptions } from '@fastify/cors'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { createCorsPolicy } from '../../features/tenants/cors-policy.ts'

const exposedHeaders = [
  'x-request-id', 'retry-after', 'ratelimit', 'ratelimit-policy',
  'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'idempotent-replayed', 'etag'
]

/**
 * @fastify/cors at preHandler (after tenant auth), asking the tenants' CORS policy
 * (features/tenants/cors-policy.ts) which origin may read each answer.
 */
async function corsPlugin (fastify: FastifyInstance): Promise<void> {
  const policy = createCorsPolicy(fastify.tenantRegistry)
  const denied: FastifyCorsOptions = { origin: false }

  await fastify.register(cors, {
    hook: 'preHandler',
    delegator (request: FastifyRequest, callback: (error: Error | null, options: FastifyCorsOptions) => void) {
      const origin = request.headers.origin
      if (origin === undefined) return callback(null, denied)
      if (!policy.allowsRequest(request, origin)) return callback(null, denied)
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
  const exposed = exposedHeaders.join(', ')
  fastify.addHook('onSend', (request, reply, payload, done) => {
    const origin = request.headers.origin
    if (origin !== undefined && reply.statusCode >= 400 && !reply.hasHeader('access-control-allow-origin')) {
      if (policy.allowsError(request, origin)) {
        reply.headers({ 'access-control-allow-origin': origin, 'access-control-expose-headers': exposed })
        if (!reply.hasHeader('vary')) reply.header('vary', 'Origin')
      }
    }
    done(null, payload)
  })
}

export default fp(corsPlugin, { name: 'cors', fastify: '5.x', dependencies: ['tenant-auth', 'tenant-registry'] })
