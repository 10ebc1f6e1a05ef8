import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { gatewayError } from '../../errors/table.ts'
import { TaskHeaders, TaskParams, TaskQuery } from '../../schemas/generation.ts'
import { errorResponses } from '../../schemas/errors.ts'
import { VideoGenerationTask } from '../../schemas/generated/evolink.ts'
import { matchesIfNoneMatch, type TaskSnapshot } from '../../features/tasks/snapshot.ts'
import { waitForProgress } from '../../features/tasks/wait.ts'
import { tenantOf } from '../../features/tenants/auth.ts'
import { tenantRateLimit } from '../../features/tenants/rate-limit.ts'

/** The task as this tenant sees it: the upstream's body with the tenant-scoped id. */
export function presentTask (snapshot: TaskSnapshot, scopedId: string): VideoGenerationTask {
  return { ...snapshot.task, id: scopedId }
}

/**
 * The upstream id behind a tenant-scoped id, for this tenant only: another
 * tenant's id, a forged one or an unknown one is 404, before any upstream call.
 */
export function upstreamIdOf (fastify: FastifyInstance, request: FastifyRequest, scopedId: string): string {
  const upstreamId = fastify.taskIds.unscope(tenantOf(request).id, scopedId)
  if (upstreamId === null) throw gatewayError('not_found', { args: ['Task not found.'], param: 'task_id' })
  return upstreamId
}

const tasksRoute: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/tasks/:task_id', {
    config: { ...tenantRateLimit('read'), tokenOperation: 'read' },
    schema: {
      tags: ['Tasks'],
      summary: 'Get a task\'s status and results',
      description: 'The task as the upstream reports it (status, progress, results with video URLs valid 24 h, error, usage; unknown fields pass through), for the tenant that created it. Another tenant\'s id, a forged id and an unknown id all answer 404. ' +
        'Reads are coalesced and cached: concurrent reads of one task share one upstream call, a running task\'s status is reused for TASK_STATUS_TTL_MS, a finished one for TASK_TERMINAL_TTL_MS. ' +
        'Answers carry an ETag (`If-None-Match` gets 304). `?wait=N` long-polls: the answer comes when the status or progress changes, or after N seconds with the current state.',
      operationId: 'getTask',
      security: [{ tenantKey: [] }],
      params: TaskParams,
      querystring: TaskQuery,
      headers: TaskHeaders,
      response: {
        200: VideoGenerationTask,
        304: { type: 'null', description: 'Not modified: the ETag in If-None-Match is still current.' },
        ...errorResponses([400, 401, 404, 429, 500, 502, 503, 504])
      }
    }
  }, async function getTask (request, reply) {
    const upstreamId = upstreamIdOf(fastify, request, request.params.task_id)
    const first = await fastify.taskStatus.read(upstreamId, request)
    const waitMs = request.query.wait === undefined ? 0 : Number(request.query.wait) * 1000
    const snapshot = await waitForProgress({ taskStatus: fastify.taskStatus, upstreamId, first, waitMs, reply })
    // A finished task frees its tenant's concurrency slot and is counted (once, however often it is read).
    await fastify.taskStatus.observe({ tenantId: tenantOf(request).id, upstreamTaskId: upstreamId, snapshot })
    reply.header('etag', snapshot.etag).header('cache-control', fastify.taskStatus.cacheControl(snapshot))
    if (matchesIfNoneMatch(request.headers['if-none-match'], snapshot.etag)) return await reply.code(304).send(null)
    return presentTask(snapshot, request.params.task_id)
  })
}

export default tasksRoute
