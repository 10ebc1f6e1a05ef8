import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { traceIdsOf } from './tracing.ts'
import { requestIdLogLabel } from '../../logger.ts'

/**
 * One access-log line per request (Fastify's own two lines are turned off in
 * app.ts): request id, tenant, route, status, upstream status and latency,
 * and for task reads whether the status cache served it (hit, shared) or not (miss).
 * Headers are never logged, so no key can reach the log from here.
 */
async function requestLoggingPlugin (fastify: FastifyInstance): Promise<void> {
  // The app's logger, with the request id first: the line request.log would write, without
  // making its child logger (logger.ts: most requests log nothing else).
  const log = fastify.log
  // A callback-style hook: on the hot path it skips a promise per request.
  fastify.addHook('onResponse', (request, reply, done) => {
    log.info({
      [requestIdLogLabel]: request.id,
      tenant: request.tenant?.id,
      endUser: request.browserToken?.endUser ?? undefined,
      method: request.method,
      route: request.routeOptions.url,
      status: reply.statusCode,
      upstreamStatus: request.upstreamStatus ?? undefined,
      upstreamMs: request.upstreamLatencyMs === null ? undefined : Math.round(request.upstreamLatencyMs * 10) / 10,
      taskCache: request.taskCache ?? undefined,
      ms: Math.round(reply.elapsedTime * 10) / 10,
      // With tracing on: the ids to find this request's trace by.
      ...traceIdsOf(request)
    }, 'request')
    done()
  })
}

export default fp(requestLoggingPlugin, { name: 'request-logging', fastify: '5.x', dependencies: ['tenant-auth', 'browser-tokens', 'upstream-client', 'task-status', 'tracing'] })
