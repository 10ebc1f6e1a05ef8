import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { createTaskIdCodec, type TaskIdCodec } from './task-id.ts'

declare module 'fastify' {
  interface FastifyInstance {
    taskIds: TaskIdCodec
  }
}

async function taskIdsPlugin (fastify: FastifyInstance, options: { secrets: readonly string[] }): Promise<void> {
  fastify.decorate('taskIds', createTaskIdCodec({ secrets: options.secrets }))
}

export default fp(taskIdsPlugin, { name: 'task-ids', fastify: '5.x' })
