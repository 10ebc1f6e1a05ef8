import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { gatewayError, isGatewayError, type ErrorCode } from '../../errors/table.ts'
import { createCircuitBreaker, type CircuitBreaker } from './circuit-breaker.ts'

export interface UpstreamBreakerOptions {
  /** UPSTREAM_BREAKER_FAILURES; 0 disables */
  failureThreshold: number
  /** UPSTREAM_BREAKER_OPEN_MS */
  openMs: number
  /** clock, ms (tests) */
  now?: () => number
}

declare module 'fastify' {
  interface FastifyInstance {
    /** the circuit breaker around every upstream attempt (its state is on /readyz) */
    upstreamBreaker: CircuitBreaker
  }
}

/**
 * What says the upstream is failing: it cannot be reached, it is too slow, it
 * answers 5xx or unreadable bodies. Its 4xx (our key, quota, rate limit, a bad
 * request) are answers: they mean it is up.
 */
const failureRows = new Set<ErrorCode>(['upstream_unavailable', 'upstream_timeout', 'upstream_error', 'bad_upstream_response'])

/**
 * One breaker per instance around the upstream: while the upstream is down,
 * callers get 503 at once (public code upstream_unavailable, with Retry-After)
 * instead of each waiting out a timeout, and the upstream is not hammered while
 * it recovers. Each instance decides alone; no shared state is needed, since
 * each sees the same upstream.
 */
async function upstreamBreakerPlugin (fastify: FastifyInstance, options: UpstreamBreakerOptions): Promise<void> {
  const log = fastify.log.child({ dependency: 'upstream' })
  const breaker = createCircuitBreaker({
    failureThreshold: options.failureThreshold,
    openMs: options.openMs,
    now: options.now,
    isFailure: (error) => isGatewayError(error) && failureRows.has(error.tableCode),
    rejection: (retryAfterMs) => {
      const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000))
      return gatewayError('upstream_circuit_open', { args: [seconds], publicCode: 'upstream_unavailable', headers: { 'retry-after': String(seconds) } })
    },
    onTransition: ({ from, to, failures }) => {
      const breakerLog = { breaker: to, from, failures, openMs: options.openMs }
      if (to === 'open') log.warn(breakerLog, from === 'half-open' ? 'upstream circuit breaker re-opened: the probe call failed' : `upstream circuit breaker opened after ${failures} consecutive failures`)
      else if (to === 'half-open') log.info(breakerLog, 'upstream circuit breaker half-open: letting one probe call through')
      else log.info(breakerLog, 'upstream circuit breaker closed: the upstream answers again')
    }
  })
  fastify.decorate('upstreamBreaker', breaker)
}

export default fp(upstreamBreakerPlugin, { name: 'upstream-breaker', fastify: '5.x' })
