import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { RateLimitOptions } from '@fastify/rate-limit'
import type { ResolvedRateLimit, Tenant } from './registry.ts'
import { tenantOf } from './auth.ts'

/** Creates and task reads are counted apart: polling must not eat the create budget. */
export type RateLimitKind = 'create' | 'read'

declare module 'fastify' {
  interface FastifyContextConfig {
    rateLimitKind?: RateLimitKind
  }
}

const planOf: Record<RateLimitKind, (tenant: Tenant) => ResolvedRateLimit> = {
  create: (tenant) => tenant.rateLimit,
  read: (tenant) => tenant.readRateLimit
}

/**
 * The route config of a per-tenant limit: after auth (preHandler), keyed by
 * tenant id, sized by the tenant's plan. @fastify/rate-limit keeps one counter
 * per route and key, in Redis when configured.
 */
export function tenantRateLimit (kind: RateLimitKind): { rateLimit: RateLimitOptions, rateLimitKind: RateLimitKind } {
  const plan = planOf[kind]
  return {
    rateLimitKind: kind,
    rateLimit: {
      hook: 'preHandler',
      keyGenerator: (request) => tenantOf(request).id,
      max: (request) => plan(tenantOf(request)).max,
      timeWindow: (request) => plan(tenantOf(request)).timeWindowMs
    }
  }
}

/**
 * Adds the IETF draft headers (draft-ietf-httpapi-ratelimit-headers-11) next to
 * the familiar x-ratelimit-* ones that @fastify/rate-limit sets:
 * `RateLimit-Policy: "tenant";q=60;w=60` and `RateLimit: "tenant";r=12;t=30`.
 */
async function tenantRateLimitPlugin (fastify: FastifyInstance): Promise<void> {
  fastify.addHook('onSend', (request: FastifyRequest, reply: FastifyReply, payload, done) => {
    const kind = request.routeOptions.config.rateLimitKind
    const remaining = reply.getHeader('x-ratelimit-remaining')
    const reset = reply.getHeader('x-ratelimit-reset')
    // A more specific limit that refused the request (an end user's) has set its own.
    if (kind !== undefined && request.tenant !== null && remaining !== undefined && reset !== undefined && !reply.hasHeader('ratelimit')) {
      const { max, timeWindowMs } = planOf[kind](request.tenant)
      reply.headers({
        'ratelimit-policy': `"tenant";q=${max};w=${Math.ceil(timeWindowMs / 1000)}`,
        ratelimit: `"tenant";r=${String(remaining)};t=${String(reset)}`
      })
    }
    done(null, payload)
  })
}

export default fp(tenantRateLimitPlugin, { name: 'tenant-rate-limit', fastify: '5.x', dependencies: ['rate-limit', 'tenant-auth'] })
