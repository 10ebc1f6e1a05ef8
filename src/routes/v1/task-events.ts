import { PassThrough } from 'node:stream'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { gatewayError, isGatewayError } from '../../errors/table.ts'
import { TaskEventsHeaders, TaskEventsQuery, TaskParams } from '../../schemas/generation.ts'
import { errorResponses } from '../../schemas/errors.ts'
import { progressed, type TaskSnapshot } from '../../features/tasks/snapshot.ts'
import { errorBody, logFailure } from '../../errors/handler.ts'
import { tenantOf } from '../../features/tenants/auth.ts'
import { tenantRateLimit } from '../../features/tenants/rate-limit.ts'
import { presentTask, upstreamIdOf } from './tasks.ts'

export interface TaskEventsRouteOptions {
  heartbeatMs: number
  maxStreamMs: number
}

/** How long EventSource waits before it reconnects after the stream closes early. */
const reconnectDelayMs = 3000

/** One server-sent event; `data` is one line of JSON (JSON.stringify writes no newline). */
function sseEvent (event: string, data: unknown, id?: string): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`
}

const taskEventsRoute: FastifyPluginAsyncTypebox<TaskEventsRouteOptions> = async (fastify, options) => {
  fastify.get('/tasks/:task_id/events', {
    config: { ...tenantRateLimit('read'), tokenOperation: 'read', tokenInQuery: true },
    schema: {
      tags: ['Tasks'],
      summary: 'Follow a task as server-sent events',
      description: 'A `text/event-stream`: an `event: task` with the whole task (as GET /v1/tasks/{task_id} answers it; `id:` is its ETag) now and on every change of status or progress, then, once the task is completed or failed, `event: end` (data: `{"status": ...}`) and the stream closes; call `close()` on your EventSource when `end` arrives. ' +
        'A failure that polling cannot cure (the task is gone upstream) is an `event: error` in the one error format, then the close. Comment lines keep an idle stream alive. However many clients follow one task, the gateway polls the upstream for it about once per TASK_STATUS_TTL_MS. ' +
        'A reconnect whose `Last-Event-ID` is the final state gets 204, which stops EventSource. ' +
        'From a browser, authenticate with a browser token (POST /v1/tokens) as `?token=`: EventSource cannot send headers. Only tokens are taken there, never tenant keys, and the query is never logged.',
      operationId: 'getTaskEvents',
      security: [{ tenantKey: [] }],
      params: TaskParams,
      querystring: TaskEventsQuery,
      headers: TaskEventsHeaders,
      response: {
        200: { description: 'The event stream.', content: { 'text/event-stream': { schema: { type: 'string' } } } },
        204: { type: 'null', description: 'The task had already ended when this reconnect\'s Last-Event-ID was sent.' },
        ...errorResponses([400, 401, 404, 429, 500, 502, 503, 504])
      }
    }
  }, async function taskEvents (request, reply) {
    const scopedId = request.params.task_id
    const upstreamId = upstreamIdOf(fastify, request, scopedId)
    // Read before the stream starts, so that a missing task is a plain 404 answer.
    const first = await fastify.taskStatus.read(upstreamId, request)
    const tenantId = tenantOf(request).id
    // A finished task frees its tenant's concurrency slot and is counted (once, however often it is seen).
    await fastify.taskStatus.observe({ tenantId, upstreamTaskId: upstreamId, snapshot: first })
    if (first.terminal && request.headers['last-event-id'] === first.etag) return await reply.code(204).send(null)

    const present = (snapshot: TaskSnapshot): string => sseEvent('task', presentTask(snapshot, scopedId), snapshot.etag) +
      (snapshot.terminal ? sseEvent('end', { status: snapshot.task.status }) : '')
    const opening = `retry: ${reconnectDelayMs}\n\n${present(first)}`
    const draining = fastify.shutdownDrain.signal
    // (The drain starts at the latest when the app closes: graceful-shutdown's preClose runs first.)
    if (first.terminal || draining.aborted) return await reply.headers(eventStreamHeaders).send(opening)

    const stream = new PassThrough()
    stream.write(opening)
    let last: TaskSnapshot = first
    let ending = false
    const finish = (lastWords?: string): void => {
      draining.removeEventListener('abort', reconnectElsewhere)
      clearInterval(heartbeat)
      clearTimeout(maxDuration)
      stopFollowing()
      if (!stream.writableEnded) stream.end(lastWords)
    }
    const stopFollowing = fastify.taskStatus.follow(upstreamId, reply, {
      snapshot (snapshot) {
        if (ending || (!snapshot.terminal && !progressed(last, snapshot))) return
        last = snapshot
        if (!snapshot.terminal) {
          stream.write(present(snapshot))
          return
        }
        ending = true
        // Recorded before `end` goes out: a client that has seen it finds the task's slot free.
        fastify.taskStatus.observe({ tenantId, upstreamTaskId: upstreamId, snapshot }).finally(() => finish(present(snapshot)))
      },
      failed (error) {
        const failure = isGatewayError(error) ? error : gatewayError('internal_error', { cause: error })
        logFailure(request, error, failure)
        finish(sseEvent('error', errorBody(failure, request.id)))
      },
      // The client went away, or the app closes (the client reconnects, to another instance say).
      gone () { finish() }
    })
    // The instance drains for shutdown: the stream ends now, with the reconnect delay restated, and
    // EventSource reconnects (with Last-Event-ID) through the load balancer to another instance.
    const reconnectElsewhere = (): void => { finish(`retry: ${reconnectDelayMs}\n: this instance is shutting down; reconnect\n\n`) }
    draining.addEventListener('abort', reconnectElsewhere, { once: true })
    // (finish() uses these two; the watch calls back on a later tick, never before they exist.)
    const heartbeat = setInterval(() => stream.write(': keep-alive\n\n'), options.heartbeatMs)
    // Past the longest stream, the client reconnects.
    const maxDuration = setTimeout(() => finish(), options.maxStreamMs)
    // The schema types the body as the text it is; Fastify streams a Readable as it comes.
    return await reply.headers(eventStreamHeaders).send(stream as unknown as string)
  })
}

const eventStreamHeaders = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-store',
  // nginx (deploy/nginx.conf) and similar proxies must pass events on as they come.
  'x-accel-buffering': 'no'
}

export default taskEventsRoute
