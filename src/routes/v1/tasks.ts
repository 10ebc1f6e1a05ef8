import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { gatewayError } from '../../errors.ts'
import { TaskParams } from '../../schemas/generation.ts'
import { errorResponses } from '../../schemas/errors.ts'
import { VideoGenerationTask } from '../../schemas/generated/evolink.ts'
import { readUpstreamTask } from '../../lib/upstream-task.ts'
import { tenantOf } from '../../plugins/app/tenant-auth.ts'
import { tenantRateLimit } from '../../plugins/app/tenant-rate-limit.ts'

const tasksRoute: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get('/tasks/:task_id', {
    config: tenantRateLimit('read'),
    schema: {
      tags: ['Tasks'],
      summary: 'Get a task\'s status and results',
      description: 'The task as the upstream reports it (status, progress, results with video URLs valid 24 h, error, usage; unknown fields pass through), for the tenant that created it. Another tenant\'s id, a forged id and an unknown id all answer 404.',
      operationId: 'getTask',
      security: [{ tenantKey: [] }],
      params: TaskParams,
      response: {
        200: VideoGenerationTask,
        ...errorResponses([400, 401, 404, 429, 500, 502, 503, 504])
      }
    }
  }, async function getTask (request) {
    const tenant = tenantOf(request)
    const scopedId = request.params.task_id
    const upstreamId = fastify.taskIds.unscope(tenant.id, scopedId)
    if (upstreamId === null) throw gatewayError('not_found', { args: ['Task not found.'], param: 'task_id' })
    const answer = await fastify.upstream.send({ method: 'GET', path: `/v1/tasks/${encodeURIComponent(upstreamId)}`, request })
    const task = readUpstreamTask(answer.body)
    task.id = scopedId
    return task
  })
}

export default tasksRoute
