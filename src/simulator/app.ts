import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify'
import { VideoGenerationRequest } from '../schemas/generated/veo-3.1-fast.ts'
import { apiRoutes } from './api-routes.ts'
import { createCalls, resetCalls } from './calls.ts'
import { controlRoutes } from './control-routes.ts'
import { invalidRequest, notFound, upstreamError } from './errors.ts'
import { OpenResponses } from './fault-responder.ts'
import { FaultControl } from './faults.ts'
import { TaskStore } from './tasks.ts'
import { paddedSampleVideo } from './media.ts'
import type { SimulatorContext, SimulatorInstance, SimulatorOptions } from './types.ts'
import { createBodyValidator } from './validation.ts'
import { CallbackSender } from './callbacks.ts'
import { UploadStore, uploadRoutes } from './uploads.ts'
import { httpUrl } from '../http/url.ts'

export type { SimulatorInstance, SimulatorOptions } from './types.ts'
export type { Fault, FaultRoute } from './faults.ts'

export const DEFAULT_MODELS: readonly string[] = ['veo-3.1-fast-generate-preview', 'veo-3.1-generate-preview']
export const DEFAULT_TASK_DURATION_MS = 20000

/** Maps Fastify's own errors (bad JSON, wrong content type, too large) to upstream-style bodies. */
function errorHandler (error: FastifyError, _request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const status = error.statusCode ?? 500
  if (status === 413) return reply.code(413).send(upstreamError('request_too_large', 'Request entity too large', 'invalid_request_error'))
  if (status === 415) return reply.code(415).send(invalidRequest('Content-Type must be application/json'))
  if (status >= 400 && status < 500) {
    const badJson = error instanceof SyntaxError || (error.code ?? '').startsWith('FST_ERR_CTP')
    return reply.code(status).send(invalidRequest(badJson ? 'Invalid JSON body' : error.message))
  }
  reply.log.error({ err: error }, 'simulator error')
  return reply.code(500).send(upstreamError('internal_error', 'Internal server error', 'api_error'))
}

/**
 * A stand-in for Evolink's video API (Veo 3.1 Fast and siblings): create,
 * task status with a clock-driven lifecycle, result files, fault injection.
 * Never listens; see startSimulator() for that.
 */
export async function buildSimulator (options: SimulatorOptions): Promise<SimulatorInstance> {
  if (typeof options.apiKey !== 'string' || options.apiKey.length === 0) throw new TypeError('buildSimulator: apiKey is required')
  const durationMs = options.taskDurationMs ?? DEFAULT_TASK_DURATION_MS
  if (!Number.isFinite(durationMs) || durationMs < 0) throw new TypeError('buildSimulator: taskDurationMs must be a non-negative number')
  const now = options.now ?? Date.now
  const models = options.models ?? [...DEFAULT_MODELS]
  const deniedModels = options.deniedModels ?? []

  const app = Fastify({
    logger: options.logger ?? false,
    // Kill keep-alive and hijacked connections on close instead of waiting for them.
    forceCloseConnections: true,
    routerOptions: { maxParamLength: 1000 }
  })

  const faults = new FaultControl()
  const calls = createCalls()
  const tasks = new TaskStore({ durationMs, now })
  const open = new OpenResponses()
  const uploads = new UploadStore()
  const callbacks = new CallbackSender({
    tasks,
    baseUrl: () => {
      const address = app.server.address()
      return address !== null && typeof address === 'object' ? httpUrl(address.address, address.port) : 'http://127.0.0.1'
    },
    retryDelaysMs: options.callbackRetryDelaysMs
  })
  const reset = (): void => {
    faults.clear()
    resetCalls(calls)
    tasks.clear()
    callbacks.clear()
    uploads.clear()
  }
  const ctx: SimulatorContext = {
    apiKey: options.apiKey,
    now,
    faults,
    calls,
    tasks,
    open,
    validateCreate: createBodyValidator(VideoGenerationRequest, { models, deniedModels, allowPrivateCallbackUrls: options.allowPrivateCallbackUrls === true }),
    callbacks,
    uploads,
    resultFile: paddedSampleVideo(options.resultFileBytes ?? 0),
    reset
  }

  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler((request, reply) => reply.code(404).send(notFound(`Unknown route: ${request.method} ${request.url.split('?')[0]}`)))
  app.addHook('preClose', (done) => {
    open.release()
    callbacks.close()
    done()
  })
  await app.register(async (instance) => apiRoutes(instance, ctx))
  await app.register(async (instance) => uploadRoutes(instance, ctx))
  await app.register(async (instance) => controlRoutes(instance, ctx))

  return { app, faults, calls, tasks, callbacks, uploads, reset }
}
