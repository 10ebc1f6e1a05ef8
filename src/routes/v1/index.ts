import type { FastifyInstance } from 'fastify'
import generationsRoute from './generations.ts'
import tasksRoute from './tasks.ts'

/** The Evolink-compatible API: every route here needs a tenant key. */
export default async function v1Routes (fastify: FastifyInstance): Promise<void> {
  fastify.addHook('onRequest', fastify.authenticateTenant)
  await fastify.register(generationsRoute)
  await fastify.register(tasksRoute)
}
