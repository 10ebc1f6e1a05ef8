import type { FastifyInstance, FastifyRequest } from 'fastify'
import { gatewayError } from '../../errors/table.ts'
import { effectiveRequest, modelsById } from '../../models/index.ts'
import type { CreateGenerationBody } from '../../schemas/generation.ts'
import type { VideoGenerationTask } from '../../schemas/generated/evolink.ts'
import type { Tenant } from '../tenants/registry.ts'
import type { Reservation } from '../usage/store/memory.ts'
import { readUpstreamTask } from '../upstream/task.ts'
import { tenantOf } from '../tenants/auth.ts'
import type { TaskIndexAttributes } from './task-index.ts'

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

export interface CreateTaskOptions {
  /** the authenticated request (its tenant, browser token, access-log fields) */
  request: FastifyRequest
  /** the native create body, whatever dialect it was written in */
  body: CreateGenerationBody
  /**
   * What the per-tenant task index keeps beside the id, for listing and for
   * dialects that answer with fields the upstream task lacks (the model as the
   * caller named it). Default: read from `body`.
   */
  indexAttributes?: Partial<TaskIndexAttributes>
}

/**
 * The one create path of the gateway, for every dialect (POST
 * /v1/videos/generations and POST /v1/videos): tenant caps and model rules,
 * the callback's SSRF check, the browser token's grant, admission (concurrency
 * slot, budget), the upstream call, settlement, the tenant-scoped id, the
 * callback registration and the task index. Authentication, rate limits and
 * Idempotency-Key run before it, as route hooks (`config` of each route).
 * Answers the upstream's task with the tenant-scoped id.
 */
export async function createTask (fastify: FastifyInstance, options: CreateTaskOptions): Promise<VideoGenerationTask> {
  const { request, body } = options
  const tenant = tenantOf(request)
  checkTenantCaps(tenant, body)
  const model = modelsById.get(body.model)
  if (model === undefined) throw gatewayError('invalid_request', { args: [`Unknown model "${body.model}".`], param: 'model' })
  model.checkRules(body as never)
  // The upstream gets the gateway's own callback URL; the tenant's is checked (SSRF) and kept here, and called, signed, by the gateway.
  // A tenant with webhookEndpoints gets the upstream's callback on every create, so that a task nobody reads still ends in an event.
  const endpointsOnly = body.callback_url === undefined && tenant.webhookEndpoints.length > 0 && fastify.webhooks.callbacksAvailable
  const callback = body.callback_url !== undefined || endpointsOnly ? await fastify.webhooks.prepare(tenant, body.callback_url ?? null) : null
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
  const upstreamTaskId = task.id
  // Scoped before settling: the usage ledger's entry (in database mode) names the id the client gets.
  const taskId = fastify.taskIds.scope(tenant.id, upstreamTaskId)
  const indexed = { id: taskId, attributes: { ...defaultIndexAttributes(body), ...options.indexAttributes } }
  // With Redis the index entry rides on the settlement's script, sent behind the answer (one write, no round trip).
  const alongWithSettlement = await fastify.tenantUsage.settle({ tenant, body, reservation, task, taskId, request, index: fastify.taskIndex.writeFor(tenant.id, indexed) })
  task.id = taskId
  if (callback !== null) await callback.register({ taskId: task.id, upstreamTaskId })
  if (!alongWithSettlement) await fastify.taskIndex.add(tenant.id, indexed, request)
  return task
}

function defaultIndexAttributes (body: CreateGenerationBody): TaskIndexAttributes {
  const { quality, duration } = effectiveRequest(body)
  return { model: body.model, prompt: body.prompt, seconds: String(duration), aspectRatio: body.aspect_ratio ?? null, quality }
}
