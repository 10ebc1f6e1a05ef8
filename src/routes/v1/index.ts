import type { FastifyInstance } from 'fastify'
import generationsRoute from './generations.ts'
import tasksRoute from './tasks.ts'
import taskEventsRoute from './task-events.ts'
import tokensRoute from './tokens.ts'
import usageRoute from './usage.ts'
import webhooksRoute from './webhooks.ts'

export interface V1RoutesOptions {
  taskEventsHeartbeatMs: number
  taskEventsMaxMs: number
}

/** The Evolink-compatible API: every route here needs a tenant key. */
export default async function v1Routes (fastify: FastifyInstance, options: V1RoutesOptions): Promise<void> {
  fastify.addHook('onRequest', fastify.authenticateTenant)
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
}
