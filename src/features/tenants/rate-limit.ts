import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { RateLimitOptions } from '@fastify/rate-limit'
import type { ResolvedRateLimit, Tenant } from './registry.ts'
import { tenantOf } from './auth.ts'

/** Creates and task reads are counted apart: polling must not eat the create budget. */
export type RateLimitKind = 'create' | 'read'

/** A create's tenant limit as the admission script counted it (Redis mode: usage/plugin.ts), for the answer's headers. */
export interface AdmittedRateLimit {
  limit: number
  remaining: number
  /** seconds until the window ends */
  resetSeconds: number
}

declare module 'fastify' {
  interface FastifyContextConfig {
    rateLimitKind?: RateLimitKind
  }
  interface FastifyRequest {
    /** set by admission when it counted this request's tenant limit (Redis mode, the create path) */
    admittedRateLimit: AdmittedRateLimit | null
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
export function tenantRateLimit (kind: RateLimitKind, options: { inAdmission?: boolean } = {}): { rateLimit: RateLimitOptions, rateLimitKind: RateLimitKind, rateLimitInAdmission?: boolean } {
  const plan = planOf[kind]
  return {
    rateLimitKind: kind,
    // The one create path (tasks/create.ts): with Redis, admission counts it (plugins/external/rate-limit.ts).
    ...(options.inAdmission === true ? { rateLimitInAdmission: true } : {}),
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
  fastify.decorateRequest('admittedRateLimit', null)
  fastify.addHook('onSend', (request: FastifyRequest, reply: FastifyReply, payload, done) => {
    const admitted = request.admittedRateLimit
    // The headers @fastify/rate-limit sets for the limits it counts, for the one admission counted.
    if (admitted !== null) reply.headers({ 'x-ratelimit-limit': admitted.limit, 'x-ratelimit-remaining': admitted.remaining, 'x-ratelimit-reset': admitted.resetSeconds })
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
