import type { FastifyInstance } from 'fastify'
import generationsRoute from './generations.ts'
import tasksRoute from './tasks.ts'
import taskEventsRoute from './task-events.ts'
import webhooksRoute from './webhooks.ts'

export interface V1RoutesOptions {
  taskEventsHeartbeatMs: number
  taskEventsMaxMs: number
}

/** The Evolink-compatible API: every route here needs a tenant key. */
export default async function v1Routes (fastify: FastifyInstance, options: V1RoutesOptions): Promise<void> {
  fastify.addHook('onRequest', fastify.authenticateTenant)
  await fastify.register(generationsRoute)
  await fastify.register(tasksRoute)
  await fastify.register(taskEventsRoute, { heartbeatMs: options.taskEventsHeartbeatMs, maxStreamMs: options.taskEventsMaxMs })
  await fastify.register(webhooksRoute)
}
