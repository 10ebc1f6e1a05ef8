import type { FastifyInstance } from 'fastify'
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
  fastify.addHook('onRequest', async function authenticate (request, reply) {
    // `<video src>` sends no Authorization: content routes take a signed link instead.
    if (presentsSignedLink(request)) return await fastify.authenticateContentLink(request)
    return await fastify.authenticateTenant(request, reply)
  })
  // Every request with a valid key counts in its tenant's usage, whatever its answer.
  fastify.addHook('onRequest', (request, _reply, done) => {
    fastify.countTenantRequest(request)
    done()
  })
  await fastify.register(generationsRoute)
  await fastify.register(tasksRoute)
  await fastify.register(tokensRoute)
  await fastify.register(taskEventsRoute, { heartbeatMs: options.taskEventsHeartbeatMs, maxStreamMs: options.taskEventsMaxMs })
  await fastify.register(usageRoute)
  await fastify.register(webhooksRoute)
  await fastify.register(taskContentRoute)
  await fastify.register(openaiRoutes, options.openai)
}
