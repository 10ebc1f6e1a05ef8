import type { FastifyInstance, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import generationsRoute from './generations.ts'
import tasksRoute from './tasks.ts'
import taskEventsRoute from './task-events.ts'
import tokensRoute from './tokens.ts'
import usageRoute from './usage.ts'
import webhooksRoute from './webhooks.ts'
import taskContentRoute, { presentsSignedLink } from './task-content.ts'
import openaiRoutes, { type OpenaiRoutesOptions } from '../../features/openai/routes.ts'

export interface V1RoutesOptions {
  taskEventsHeartbeatMs: number
  taskEventsMaxMs: number
  /** the OpenAI Videos dialect (features/openai) */
  openai: OpenaiRoutesOptions
}

/** The Evolink-compatible API and the OpenAI Videos dialect: every route here needs a tenant key (or a browser token, or a signed link where the route says so). */
export default async function v1Routes (fastify: FastifyInstance, options: V1RoutesOptions): Promise<void> {
  // One callback-style hook, synchronous for a tenant key (the common case): no promise, no second hook.
  fastify.addHook('onRequest', function authenticate (request, _reply, done) {
    let pending: Promise<void> | undefined
    try {
      // `<video src>` sends no Authorization: content routes take a signed link instead.
      pending = presentsSignedLink(request) ? fastify.authenticateContentLink(request) : fastify.authenticateTenant(request)
    } catch (error) {
      done(error as Error)
      return
    }
    if (pending === undefined) {
      authenticated(request, done)
      return
    }
    pending.then(() => { authenticated(request, done) }, done)
  })
  // Every request with a valid key counts in its tenant's usage, whatever its answer (a refused one never gets here).
  function authenticated (request: FastifyRequest, done: HookHandlerDoneFunction): void {
    fastify.countTenantRequest(request)
    done()
  }
  await fastify.register(generationsRoute)
  await fastify.register(tasksRoute)
  await fastify.register(tokensRoute)
  await fastify.register(taskEventsRoute, { heartbeatMs: options.taskEventsHeartbeatMs, maxStreamMs: options.taskEventsMaxMs })
  await fastify.register(usageRoute)
  await fastify.register(webhooksRoute)
  await fastify.register(taskContentRoute)
  await fastify.register(openaiRoutes, options.openai)
}
