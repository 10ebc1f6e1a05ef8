import type { FastifyInstance } from 'fastify'
import { bearerMatches } from './auth.ts'
import { invalidRequest, unauthorized } from './errors.ts'
import { FaultError } from './faults.ts'
import type { SimulatorContext } from './types.ts'

/**
 * HTTP control for the standalone mode, behind the same bearer key:
 * POST /_simulator/faults (one fault as JSON), DELETE /_simulator/faults,
 * GET /_simulator/stats, POST /_simulator/reset.
 */
export async function controlRoutes (app: FastifyInstance, ctx: SimulatorContext): Promise<void> {
  app.addHook('onRequest', async (request, reply) => {
    if (!bearerMatches(request.headers.authorization, ctx.apiKey)) return reply.code(401).send(unauthorized())
    return undefined
  })

  const snapshot = (): unknown => ({
    create: ctx.calls.create,
    task: ctx.calls.task,
    file: ctx.calls.file,
    upload: ctx.calls.upload,
    log: ctx.calls.log,
    // JSON has no Infinity: times and remaining are null for "every matching call".
    faults: ctx.faults.list().map(({ fault, remaining }) => ({
      ...fault,
      times: Number.isFinite(fault.times) ? fault.times : null,
      remaining: Number.isFinite(remaining) ? remaining : null
    }))
  })

  app.post('/_simulator/faults', async (request, reply) => {
    try {
      ctx.faults.push(request.body as never)
    } catch (error) {
      if (error instanceof FaultError) return reply.code(400).send(invalidRequest(error.message))
      throw error
    }
    return reply.code(201).send({ queued: ctx.faults.size })
  })

  app.delete('/_simulator/faults', async () => {
    ctx.faults.clear()
    return { queued: 0 }
  })

  app.get('/_simulator/stats', async () => snapshot())

  app.post('/_simulator/reset', async () => {
    ctx.reset()
    return { reset: true }
  })
}
