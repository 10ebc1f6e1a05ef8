import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, RouteOptions } from 'fastify'
import { gatewayError, type GatewayError } from '../../errors/table.ts'
import { fallbackRateLimitStore, localRateLimitCounter, type RateLimitCount, type StoreErrorPolicy } from '../../features/store/fallback-rate-limit-store.ts'

/**
 * With Redis, a create's tenant limit is counted by the admission script (usage/store/redis.ts),
 * in the same round trip as its concurrency slot and budgets, not by @fastify/rate-limit.
 */
export interface AdmissionRateLimit {
  /** the counters' namespace (`vg:rl:`); a create's counter is `<ns>{<tenant>}:<method><url>` */
  keyPrefix: string
  /** RATE_LIMIT_ON_STORE_ERROR, for the admission script's limit while Redis is down */
  onStoreError: StoreErrorPolicy
  /** what the `memory` policy counts in meanwhile */
  local: { incr (key: string, timeWindowMs: number, max: number): RateLimitCount }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** null in memory mode, where @fastify/rate-limit counts every route's limit */
    admissionRateLimit: AdmissionRateLimit | null
  }
  interface FastifyContextConfig {
    /** this route's tenant limit is counted on admission (usage/plugin.ts) when there is Redis: the one create path's routes */
    rateLimitInAdmission?: boolean
  }
}

export interface RateLimitPluginOptions {
  /** RATE_LIMIT_ON_STORE_ERROR: what the limits do while Redis is down (see fallback-rate-limit-store.ts) */
  onStoreError: StoreErrorPolicy
}

/**
 * @fastify/rate-limit, not global: each route states its own limit (see
 * tenant-rate-limit.ts). Counters live in Redis when there is one, so that N
 * instances enforce one limit together; otherwise in this process.
 */
async function rateLimitPlugin (fastify: FastifyInstance, options: RateLimitPluginOptions): Promise<void> {
  const { redis, redisOutage } = fastify
  fastify.decorate('admissionRateLimit', redis === null
    ? null
    : { keyPrefix: fastify.redisKeys.rateLimit, onStoreError: options.onStoreError, local: localRateLimitCounter() })
  if (redis !== null) {
    // Before @fastify/rate-limit's own onRoute hook (registered below): such a route is not counted twice.
    fastify.addHook('onRoute', (routeOptions: RouteOptions) => {
      const config = routeOptions.config as { rateLimitInAdmission?: boolean, rateLimit?: unknown } | undefined
      if (config?.rateLimitInAdmission === true) config.rateLimit = false
    })
  }
  await fastify.register(rateLimit, {
    global: false,
    // With Redis: its counters, and the configured policy while it is down. Without: the plugin's memory store.
    store: redis === null || redisOutage === null
      ? undefined
      : fallbackRateLimitStore({ redis, keyPrefix: fastify.redisKeys.rateLimit, policy: options.onStoreError, outage: redisOutage }),
    // The store decides what a Redis failure means; anything else failing is a bug and must not pass silently.
    skipOnError: false,
    errorResponseBuilder: (_request, context) => gatewayError('rate_limit_exceeded', { args: [context.after] })
  })
}

/**
 * The 429 of a limit checked by hand (`createRateLimit`), with `Retry-After` and the
 * IETF draft headers naming which limit it was (`"ip"`, `"end-user"`).
 */
export function limitExceeded (options: { policy: string, max: number, timeWindowMs: number, retryAfterSeconds: number }): GatewayError {
  const { policy, max, timeWindowMs, retryAfterSeconds } = options
  return gatewayError('rate_limit_exceeded', {
    args: [`${retryAfterSeconds} seconds`],
    headers: {
      'retry-after': String(retryAfterSeconds),
      'ratelimit-policy': `"${policy}";q=${max};w=${Math.ceil(timeWindowMs / 1000)}`,
      ratelimit: `"${policy}";r=0;t=${retryAfterSeconds}`
    }
  })
}

export default fp(rateLimitPlugin, { name: 'rate-limit', fastify: '5.x', dependencies: ['redis-store'] })
