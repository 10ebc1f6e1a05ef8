import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { gatewayError } from '../../errors/table.ts'
import { effectiveRequest, modelsById } from '../../models/index.ts'
import { CreateGenerationBody } from '../../schemas/generation.ts'
import type { Tenant } from '../../features/tenants/registry.ts'
import type { Reservation } from '../../features/usage/store/memory.ts'
import { IdempotencyHeaders } from '../../schemas/idempotency.ts'
import { errorResponses } from '../../schemas/errors.ts'
import { VideoGenerationTask } from '../../schemas/generated/evolink.ts'
import { readUpstreamTask } from '../../features/upstream/task.ts'
import { tenantOf } from '../../features/tenants/auth.ts'
import { tenantRateLimit } from '../../features/tenants/rate-limit.ts'

/** What this tenant may ask for (tenants file): 403 forbidden naming the field, before anything is counted. */
function checkTenantCaps (tenant: Tenant, body: CreateGenerationBody): void {
  if (tenant.allowedModels !== null && !tenant.allowedModels.has(body.model)) {
    throw gatewayError('forbidden', { args: [`Model "${body.model}" is not enabled for this tenant.`], param: 'model' })
  }
  const { n, quality, duration } = effectiveRequest(body)
  if (tenant.maxN !== null && n > tenant.maxN) {
    throw gatewayError('forbidden', { args: [`"n" may be at most ${tenant.maxN} for this tenant.`], param: 'n' })
  }
  if (tenant.maxDuration !== null && duration > tenant.maxDuration) {
    const what = body.generation_type === 'REFERENCE' ? 'REFERENCE videos last 8 seconds; ' : ''
    throw gatewayError('forbidden', { args: [`${what}"duration" may be at most ${tenant.maxDuration} seconds for this tenant.`], param: 'duration' })
  }
  if (tenant.allowedQualities !== null && !tenant.allowedQualities.has(quality)) {
    throw gatewayError('forbidden', { args: [`Quality "${quality}" is not enabled for this tenant; allowed: ${[...tenant.allowedQualities].join(', ')}.`], param: 'quality' })
  }
}

const generationsRoute: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.post('/videos/generations', {
    config: { ...tenantRateLimit('create'), idempotency: true, tokenOperation: 'create' },
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
  }, async function createGeneration (request) {
    const tenant = tenantOf(request)
    const { body } = request
    checkTenantCaps(tenant, body)
    const model = modelsById.get(body.model)
    if (model === undefined) throw gatewayError('invalid_request', { args: [`Unknown model "${body.model}".`], param: 'model' })
    model.checkRules(body as never)
    // The upstream gets the gateway's own callback URL; the tenant's is checked (SSRF) and kept here, and called, signed, by the gateway.
    const callback = body.callback_url === undefined ? null : await fastify.webhooks.prepare(tenant, body.callback_url)
    const upstreamBody = callback === null ? body : { ...body, callback_url: callback.upstreamCallbackUrl }
    // Reserve, call, settle. A browser token's narrowing and create cap first, then the tenant's
    // concurrency slot and budget: all taken before the upstream is called, all given back if it fails.
    const takeBackTokenCreate = await fastify.browserTokens.admitCreate(request, body)
    let reservation: Reservation | null | undefined
    let task
    try {
      reservation = await fastify.tenantUsage.admit({ tenant, body, request })
      if (callback !== null) await callback.reserve()
      const answer = await fastify.upstream.send({ method: 'POST', path: '/v1/videos/generations', body: upstreamBody, request })
      task = readUpstreamTask(answer.body)
    } catch (error) {
      if (reservation !== undefined) await fastify.tenantUsage.release({ reservation, request })
      await takeBackTokenCreate()
      throw error
    }
    await fastify.tenantUsage.settle({ tenant, body, reservation, task, request })
    const upstreamTaskId = task.id
    task.id = fastify.taskIds.scope(tenant.id, upstreamTaskId)
    if (callback !== null) await callback.register({ taskId: task.id, upstreamTaskId })
    return task
  })
}

export default generationsRoute
