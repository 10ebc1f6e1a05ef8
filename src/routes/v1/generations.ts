import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { CreateGenerationBody } from '../../schemas/generation.ts'
import { IdempotencyHeaders } from '../../schemas/idempotency.ts'
import { errorResponses } from '../../schemas/errors.ts'
import { VideoGenerationTask } from '../../schemas/generated/evolink.ts'
import { createTask } from '../../features/tasks/create.ts'
import { tenantRateLimit } from '../../features/tenants/rate-limit.ts'

const generationsRoute: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/videos/generations', {
    config: { ...tenantRateLimit('create', { inAdmission: true }), idempotency: true, tokenOperation: 'create' },
    schema: {
      tags: ['Video Generation'],
      summary: 'Create a video generation task',
      description: 'Validates the body (schema, unknown fields, cross-field rules) and the tenant\'s caps (models, `n`, `duration`, `quality`: 403), admits it against the tenant\'s concurrency cap and budgets (429 `concurrency_limit_exceeded`, `budget_exceeded`) before any upstream call, then forwards it with the gateway\'s upstream key. Answers the upstream\'s task (status `pending`) with a tenant-scoped `id` to poll. With `callback_url`, the gateway itself is called back by the upstream and relays the end of the task to that URL, signed per Standard Webhooks and retried (README, "Webhooks").',
      operationId: 'createVideoGeneration',
      security: [{ tenantKey: [] }],
      headers: IdempotencyHeaders,
      body: CreateGenerationBody,
      response: {
        200: VideoGenerationTask,
        ...errorResponses([400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 502, 503, 504])
      }
    }
  }, function createGeneration (request) {
    // createTask's promise as it is: an async wrapper would add one, and its ticks, per create.
    return createTask(fastify, { request, body: request.body })
  })
}

export default generationsRoute
