import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { bearerMatches } from './auth.ts'
import { callRecordOf, recordCall } from './calls.ts'
import { invalidTaskId, notFound, taskNotFound, unauthorized } from './errors.ts'
import { actOutFault } from './fault-responder.ts'
import { faultKind } from './faults.ts'
import { parseResultFileName } from './media.ts'
import type { TaskInput } from './tasks.ts'
import type { SimulatorContext, SimulatorRoute } from './types.ts'

/** Links point back at whatever host and port the caller used. */
function baseUrlOf (request: FastifyRequest): string {
  return `${request.protocol}://${request.host || '127.0.0.1'}`
}

/**
 * onRequest for the upstream routes: count and log the call, act out the next
 * matching fault (before auth and before the body is read, as a broken
 * upstream would), then check the bearer key.
 */
export function gate (ctx: SimulatorContext, route: SimulatorRoute, requireAuth: boolean) {
  return async function simulatorGate (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> {
    const record = recordCall(ctx.calls, route, request, ctx.now())
    const fault = ctx.faults.take(route)
    if (fault !== undefined) {
      record.fault = faultKind(fault)
      if (await actOutFault(fault, route, request, reply, ctx.open) === 'done') return reply
    }
    if (requireAuth && !bearerMatches(request.headers.authorization, ctx.apiKey)) {
      return reply.code(401).send(unauthorized())
    }
    return undefined
  }
}

/** POST /v1/videos/generations, GET /v1/tasks/:task_id, GET /files/:file. */
export async function apiRoutes (app: FastifyInstance, ctx: SimulatorContext): Promise<void> {
  app.post('/v1/videos/generations', { onRequest: gate(ctx, 'create', true) }, async (request, reply) => {
    const record = callRecordOf(request)
    if (record !== undefined) record.body = request.body
    const result = ctx.validateCreate(request.body)
    if (!result.ok) return reply.code(result.rejection.status).send(result.rejection.body)
    const task = ctx.tasks.create(result.body as unknown as TaskInput)
    if (typeof result.body.callback_url === 'string') ctx.callbacks.track(task, result.body.callback_url)
    return ctx.tasks.created(task)
  })

  app.get<{ Params: { task_id: string } }>('/v1/tasks/:task_id', { onRequest: gate(ctx, 'task', true) }, async (request, reply) => {
    const id = request.params.task_id
    if (!id.startsWith('task-unified-')) return reply.code(400).send(invalidTaskId())
    const task = ctx.tasks.get(id)
    if (task === undefined) return reply.code(404).send(taskNotFound())
    ctx.callbacks.check(task)
    return ctx.tasks.view(task, baseUrlOf(request))
  })

  // Result downloads (a CDN upstream): no auth; 404 unless the task completed and the link is fresh.
  app.get<{ Params: { file: string } }>('/files/:file', { onRequest: gate(ctx, 'file', false) }, async (request, reply) => {
    const parsed = parseResultFileName(request.params.file)
    const task = parsed === undefined ? undefined : ctx.tasks.get(parsed.taskId)
    if (parsed === undefined || task === undefined || !ctx.tasks.isFileAvailable(task, parsed.index)) {
      return reply.code(404).send(notFound('File not found or expired'))
    }
    return reply.type('video/mp4').header('content-length', String(ctx.resultFile.size)).send(ctx.resultFile.body())
  })
}
