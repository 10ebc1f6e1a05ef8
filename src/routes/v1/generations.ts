import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { gatewayError } from '../../errors.ts'
import { modelsById } from '../../models.ts'
import { CreateGenerationBody } from '../../schemas/generation.ts'
import { IdempotencyHeaders } from '../../schemas/idempotency.ts'
import { errorResponses } from '../../schemas/errors.ts'
import { VideoGenerationTask } from '../../schemas/generated/evolink.ts'
import { readUpstreamTask } from '../../lib/upstream-task.ts'
import { tenantOf } from '../../plugins/app/tenant-auth.ts'
import { tenantRateLimit } from '../../plugins/app/tenant-rate-limit.ts'

const generationsRoute: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/videos/generations', {
    config: { ...tenantRateLimit('create'), idempotency: true },
    schema: {
      tags: ['Video Generation'],
      summary: 'Create a video generation task',
      description: 'Validates the body (schema, unknown fields, cross-field rules) before any upstream call, then forwards it with the gateway\'s upstream key. Answers the upstream\'s task (status `pending`) with a tenant-scoped `id` to poll. With `callback_url`, the gateway itself is called back by the upstream and relays the end of the task to that URL, signed per Standard Webhooks and retried (README, "Webhooks").',
      operationId: 'createVideoGeneration',
      security: [{ tenantKey: [] }],
      headers: IdempotencyHeaders,
      body: CreateGenerationBody,
      response: {
        200: VideoGenerationTask,
        ...errorResponses([400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 502, 503, 504])
      }
    }
  }, async function createGeneration (request) {
    const tenant = tenantOf(request)
    const { body } = request
    if (tenant.allowedModels !== null && !tenant.allowedModels.has(body.model)) {
      throw gatewayError('forbidden', { args: [`Model "${body.model}" is not enabled for this tenant.`], param: 'model' })
    }
    const model = modelsById.get(body.model)
    if (model === undefined) throw gatewayError('invalid_request', { args: [`Unknown model "${body.model}".`], param: 'model' })
    model.checkRules(body as never)
    // The upstream gets the gateway's own callback URL; the tenant's is kept here and called, signed, by the gateway.
    const callback = body.callback_url === undefined ? null : await fastify.webhooks.prepare(tenant, body.callback_url)
    const upstreamBody = callback === null ? body : { ...body, callback_url: callback.upstreamCallbackUrl }
    const answer = await fastify.upstream.send({ method: 'POST', path: '/v1/videos/generations', body: upstreamBody, request })
    const task = readUpstreamTask(answer.body)
    const upstreamTaskId = task.id
    task.id = fastify.taskIds.scope(tenant.id, upstreamTaskId)
    if (callback !== null) await callback.register({ taskId: task.id, upstreamTaskId })
    return task
  })
}

export default generationsRoute
