import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { errorResponses } from '../schemas/errors.ts'

const HealthStatus = Type.Object({
  status: Type.Enum(['ok', 'unavailable']),
  checks: Type.Optional(Type.Object({
    config: Type.Enum(['ok']),
    store: Type.Enum(['memory', 'ok', 'degraded']),
    upstream: Type.Enum(['closed', 'open', 'half-open'], { description: 'The upstream circuit breaker. Informational: an open breaker does not make the instance unready (every replica sees the same upstream, and an open breaker answers 503 in the error format at once).' }),
    database: Type.Optional(Type.Enum(['ok', 'degraded'], { description: 'Database mode only (DATABASE_URL). Informational: while PostgreSQL is unreachable every instance keeps serving the tenants and keys it holds (admin changes fail until it is back), so a degraded database does not make the instance unready.' }))
  }))
})

const readinessPingTimeoutMs = 1000

/** Liveness and readiness for orchestrators; no key needed, nothing secret shown. */
const healthRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/healthz', {
    schema: { tags: ['Operations'], summary: 'The process is alive', response: { 200: HealthStatus } }
  }, async () => ({ status: 'ok' as const }))

  fastify.get('/readyz', {
    schema: {
      tags: ['Operations'],
      summary: 'Ready for traffic: configuration loaded, shared store reachable (503 with `store: degraded` when it is not; 503 without checks once the instance drains for shutdown)',
      response: { 200: HealthStatus, 503: HealthStatus, ...errorResponses([500]) }
    }
  }, async (_request, reply) => {
    // Draining (SIGTERM): still serving, but load balancers should send new work elsewhere.
    if (fastify.shutdownDrain.draining) return reply.code(503).send({ status: 'unavailable' as const })
    const { redis } = fastify
    const upstream = fastify.upstreamBreaker.state
    // health() is the database as last seen (probed in the background): no query here.
    const database = fastify.database === null ? {} : { database: fastify.database.health() }
    if (redis === null) return { status: 'ok' as const, checks: { config: 'ok' as const, store: 'memory' as const, upstream, ...database } }
    const reachable = await Promise.race([
      redis.ping().then(() => true, () => false),
      new Promise<boolean>((resolve) => setTimeout(resolve, readinessPingTimeoutMs, false).unref())
    ])
    if (reachable) return { status: 'ok' as const, checks: { config: 'ok' as const, store: 'ok' as const, upstream, ...database } }
    // Degraded, not down: requests are still served (README, "Scale-out and failure policy"), but an
    // orchestrator should prefer instances whose store answers.
    return reply.code(503).send({ status: 'unavailable' as const, checks: { config: 'ok' as const, store: 'degraded' as const, upstream, ...database } })
  })
}

export default healthRoutes
