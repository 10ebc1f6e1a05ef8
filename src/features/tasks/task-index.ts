import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { storeUnavailable } from '../../errors/table.ts'
import { createMemoryTaskIndexStore, type TaskIndexAttributes, type TaskIndexEntry, type TaskIndexListOptions, type TaskIndexPage, type TaskIndexStore } from './index-store/memory.ts'
import { createRedisTaskIndexStore, type TaskIndexWrite } from './index-store/redis.ts'

export type { TaskIndexAttributes, TaskIndexEntry, TaskIndexPage } from './index-store/memory.ts'

export interface TaskIndexOptions {
  /** entries kept per tenant (TASK_INDEX_MAX_PER_TENANT) */
  maxEntriesPerTenant: number
  /** entries older than this are dropped (ms) */
  retentionMs: number
  now?: () => number
}

export interface TaskIndex {
  /**
   * Indexes a create that the upstream accepted. Never throws: the task exists
   * and is paid for whatever the index store says (an outage is logged, and the
   * task stays readable by id on the native route).
   */
  add (tenantId: string, created: { id: string, attributes: TaskIndexAttributes }, request: FastifyRequest): Promise<void>
  /**
   * Redis: the same add as a write that the create's settlement carries (one script per
   * create, sent behind the answer: usage/store/redis.ts); null in memory mode, where add() is it.
   */
  writeFor (tenantId: string, created: { id: string, attributes: TaskIndexAttributes }): TaskIndexWrite | null
  /** these throw store_unavailable (503) while the store is down */
  get (tenantId: string, id: string): Promise<TaskIndexEntry | null>
  list (tenantId: string, options: TaskIndexListOptions): Promise<TaskIndexPage | null>
  /**
   * A tenant deletes a task: it leaves the index, and every removal listener
   * hears of it (even when it was not indexed: a delete is idempotent, and
   * whatever else holds the task, the archive's files, must go too).
   */
  remove (removed: TaskRemoval): Promise<boolean>
  /**
   * Subscribes to deletions (features do, while the app is built). The seam
   * where the archive's erasure joins: `taskIndex.onRemoved(archive.erase)`.
   */
  onRemoved (listener: TaskRemovedListener): void
}

export interface TaskRemoval {
  tenantId: string
  /** tenant-scoped */
  taskId: string
  upstreamTaskId: string
}

/** Must be idempotent: a delete may be repeated. A throw fails the delete (503-style), so it can be retried. */
export type TaskRemovedListener = (removed: TaskRemoval) => Promise<void> | void

declare module 'fastify' {
  interface FastifyInstance {
    taskIndex: TaskIndex
  }
}

/**
 * The per-tenant index of tasks (index-store/): every create of every dialect
 * is added by the one create path (create.ts). Memory without REDIS_URL (per
 * instance, lost on restart), Redis with it.
 */
async function taskIndexPlugin (fastify: FastifyInstance, options: TaskIndexOptions): Promise<void> {
  const { redis, redisOutage, redisWriteBehind } = fastify
  const limits = { maxEntriesPerTenant: options.maxEntriesPerTenant, retentionMs: options.retentionMs, now: options.now ?? Date.now }
  const store: TaskIndexStore = redis === null
    ? createMemoryTaskIndexStore(limits)
    : createRedisTaskIndexStore({ ...limits, redis, keyPrefix: fastify.redisKeys.taskIndex })

  const removedListeners: TaskRemovedListener[] = []
  let sequence = 0

  const entryOf = (created: { id: string, attributes: TaskIndexAttributes }): TaskIndexEntry => {
    const createdAt = limits.now()
    sequence = (sequence + 1) % 1000
    return { ...created, createdAt, rank: createdAt * 1000 + sequence }
  }

  async function guarded<T> (operation: () => Promise<T>): Promise<T> {
    try {
      // This instance's own creates are sent behind their answers: a read here sees them (a write
      // that is sent is ahead of this read on the one connection; one waiting for a retry goes now).
      if (redisWriteBehind !== null && redisWriteBehind.pending > 0) await redisWriteBehind.flush()
      return await operation()
    } catch (cause) {
      redisOutage?.failed(cause)
      throw storeUnavailable(cause)
    }
  }

  fastify.decorate('taskIndex', {
    async add (tenantId, created, request) {
      const entry = entryOf(created)
      try {
        await store.add(tenantId, entry)
      } catch (error) {
        redisOutage?.failed(error)
        request.log.error({ err: error, taskId: entry.id }, 'the task index could not record a create')
      }
    },
    writeFor (tenantId, created) {
      return store.writeOf === undefined ? null : store.writeOf(tenantId, entryOf(created))
    },
    get: async (tenantId, id) => await guarded(async () => await store.get(tenantId, id)),
    list: async (tenantId, listOptions) => await guarded(async () => await store.list(tenantId, listOptions)),
    async remove (removed) {
      for (const listener of removedListeners) await listener(removed)
      return await guarded(async () => await store.remove(removed.tenantId, removed.taskId))
    },
    onRemoved (listener) {
      removedListeners.push(listener)
    }
  } satisfies TaskIndex)
}

export default fp(taskIndexPlugin, { name: 'task-index', fastify: '5.x', dependencies: ['redis-store'] })
