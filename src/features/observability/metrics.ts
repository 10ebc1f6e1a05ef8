import { timingSafeEqual } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'
import { TalliedCounter, TalliedHistogram } from './tallies.ts'
import { gatewayError, isGatewayError, type ErrorCode } from '../../errors/table.ts'
import { fromMilli } from '../usage/charge.ts'

export interface MetricsOptions {
  /** METRICS_TOKEN: when set, GET /metrics on the main port answers to `Authorization: Bearer <token>` */
  token: string
}

export interface UpstreamAttempt {
  method: 'GET' | 'POST'
  durationMs: number
  /** what the attempt threw (a gateway error of the table), if it failed */
  error?: unknown
}

export interface GatewayMetrics {
  /** this app's own registry (not prom-client's global one: several apps may share a process) */
  readonly registry: Registry
  /** one upstream attempt, for the latency histogram and the error counter */
  upstreamAttempt (attempt: UpstreamAttempt): void
  /** credits charged to a tenant (a settled create, or a correction from the task's final usage; negative: refunded) */
  creditsCharged (tenantId: string, creditsMilli: number): void
  videoSecondsOrdered (tenantId: string, seconds: number): void
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: GatewayMetrics
  }
  interface FastifyContextConfig {
    /** the API dialect of a route that is not the native one (`openai`): counted in vg_dialect_requests_total */
    dialect?: 'openai'
  }
}

/** Table rows that are a tenant being turned away by a limit, and the `reason` label each gets. */
const rejectionReasons: Partial<Record<ErrorCode, string>> = {
  rate_limit_exceeded: 'rate_limit',
  concurrency_limit_exceeded: 'concurrency',
  budget_exceeded: 'budget'
}

/**
 * Prometheus metrics (prom-client). Labels are bounded: `route` is the route
 * pattern (`/v1/tasks/:task_id`, never an id), `tenant` the tenant's id from
 * the tenants file (never a key; empty when the request had no valid key).
 */
async function metricsPlugin (fastify: FastifyInstance, options: MetricsOptions): Promise<void> {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: 'vg_' })
  // Counted in plain maps, handed to prom-client at scrape time (tallies.ts): on every request.
  const requests = new TalliedCounter({
    name: 'vg_http_requests_total',
    help: 'Requests answered, by route pattern, method, status and tenant.',
    labelNames: ['route', 'method', 'status', 'tenant'] as const,
    registers: [registry]
  })
  // Its own family rather than a label of vg_http_requests_total, whose series dashboards already read; native requests are the rest.
  const dialectRequests = new Counter({
    name: 'vg_dialect_requests_total',
    help: 'Requests answered on a route of another API dialect than the native one (`openai`: the OpenAI Videos API), by dialect, status and tenant.',
    labelNames: ['dialect', 'status', 'tenant'] as const,
    registers: [registry]
  })
  // A plain count, read at scrape time (a Gauge's inc and dec go through its labels machinery).
  let inFlight = 0
  // One function for every request's 'close' (no closure, no once() wrapper per request).
  const requestClosed = (): void => { inFlight-- }
  new Gauge({ // eslint-disable-line no-new
    name: 'vg_http_requests_in_flight',
    help: 'Requests being processed right now (long-polls and event streams included).',
    registers: [registry],
    collect () { this.set(inFlight) }
  })
  const rejections = new Counter({
    name: 'vg_tenant_rejections_total',
    help: 'Requests turned away by a tenant limit, by reason (rate_limit, concurrency, budget) and tenant.',
    labelNames: ['reason', 'tenant'] as const,
    registers: [registry]
  })
  const upstreamDuration = new TalliedHistogram({
    name: 'vg_upstream_request_duration_seconds',
    help: 'Duration of each upstream attempt, by method and outcome (ok, or the error code it was mapped to).',
    labelNames: ['method', 'outcome'] as const,
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry]
  })
  const upstreamErrors = new Counter({
    name: 'vg_upstream_errors_total',
    help: 'Failed upstream attempts by the error code they were mapped to (upstream_auth_failed, upstream_quota_exhausted, upstream_timeout, upstream_circuit_open, ...).',
    labelNames: ['method', 'code'] as const,
    registers: [registry]
  })
  const credits = new TalliedCounter({ name: 'vg_credits_charged_total', help: 'Upstream credits charged, by tenant (creates settled to the upstream\'s usage.credits_reserved, plus upward corrections from final usage).', labelNames: ['tenant'] as const, registers: [registry] })
  const refunds = new TalliedCounter({ name: 'vg_credits_refunded_total', help: 'Credits given back to tenants when a task\'s final usage was lower than reserved.', labelNames: ['tenant'] as const, registers: [registry] })
  const videoSeconds = new TalliedCounter({ name: 'vg_video_seconds_total', help: 'Seconds of video ordered (duration × n of created tasks), by tenant.', labelNames: ['tenant'] as const, registers: [registry] })
  const breakerStates = ['closed', 'open', 'half-open'] as const
  new Gauge({ // eslint-disable-line no-new
    name: 'vg_upstream_circuit_breaker_state',
    help: 'The upstream circuit breaker: 1 for its current state, 0 for the others.',
    labelNames: ['state'] as const,
    registers: [registry],
    collect () {
      const current = fastify.upstreamBreaker.state
      for (const state of breakerStates) this.set({ state }, state === current ? 1 : 0)
    }
  })
  new Gauge({ // eslint-disable-line no-new
    name: 'vg_redis_up',
    help: 'Whether the shared store (Redis) is connected and ready: 1 or 0; -1 without REDIS_URL (memory mode).',
    registers: [registry],
    collect () {
      const { redis } = fastify
      this.set(redis === null ? -1 : redis.status === 'ready' ? 1 : 0)
    }
  })

  // What the bench subtracts from Redis's own script count to get the round trips a create waits for.
  let writesBehindCounted = 0
  new Counter({ // eslint-disable-line no-new
    name: 'vg_redis_writes_behind_total',
    help: 'Redis script calls sent behind an answer, not waited for (a create\'s settlement and task-index entry; a retried one counts again); 0 in memory mode.',
    registers: [registry],
    collect () {
      const sent = fastify.redisWriteBehind?.sent ?? 0
      this.inc(sent - writesBehindCounted)
      writesBehindCounted = sent
    }
  })

  fastify.decorate('metrics', {
    registry,
    upstreamAttempt ({ method, durationMs, error }) {
      const code = error === undefined ? 'ok' : isGatewayError(error) ? error.tableCode : 'internal_error'
      const key = `${method}\n${code}`
      const seconds = durationMs / 1000
      if (!upstreamDuration.record(key, seconds)) upstreamDuration.begin(key, { method, outcome: code }, seconds)
      if (error !== undefined) upstreamErrors.inc({ method, code })
    },
    creditsCharged (tenantId, creditsMilli) {
      const counter = creditsMilli > 0 ? credits : creditsMilli < 0 ? refunds : null
      const value = fromMilli(Math.abs(creditsMilli))
      if (counter !== null && !counter.add(tenantId, value)) counter.begin(tenantId, { tenant: tenantId }, value)
    },
    videoSecondsOrdered (tenantId, seconds) {
      if (!videoSeconds.add(tenantId, seconds)) videoSeconds.begin(tenantId, { tenant: tenantId }, seconds)
    }
  } satisfies GatewayMetrics)

  fastify.addHook('onRequest', (request, reply, done) => {
    inFlight++
    // 'close' comes once whatever the end: answered, aborted, or the connection lost.
    reply.raw.on('close', requestClosed)
    done()
  })
  fastify.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done) => {
    const tenant = request.tenant?.id ?? ''
    const route = request.routeOptions.url ?? 'unmatched'
    // (A route pattern has no newline, a tenant id none either: the key is unambiguous.)
    const key = `${route}\n${request.method}\n${reply.statusCode}\n${tenant}`
    if (!requests.add(key)) requests.begin(key, { route, method: request.method, status: String(reply.statusCode), tenant })
    const dialect = request.routeOptions.config.dialect
    if (dialect !== undefined) dialectRequests.inc({ dialect, status: String(reply.statusCode), tenant })
    const reason = request.errorCode === null ? undefined : rejectionReasons[request.errorCode]
    if (reason !== undefined) rejections.inc({ reason, tenant })
    done()
  })

  if (options.token !== '') {
    const expected = Buffer.from(`Bearer ${options.token}`)
    fastify.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
      const presented = Buffer.from(request.headers.authorization ?? '')
      // (The answer is the one 401 of the gateway: it says nothing of what the token is for.)
      if (presented.length !== expected.length || !timingSafeEqual(presented, expected)) throw gatewayError('unauthorized')
      return await reply.type(registry.contentType).header('cache-control', 'no-store').send(await registry.metrics())
    })
  }
}

export default fp(metricsPlugin, { name: 'metrics', fastify: '5.x', dependencies: ['redis-store', 'upstream-breaker'] })
